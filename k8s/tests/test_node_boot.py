"""Fresh GPU nodes get their models (issue 12, blocker 2).

On AL2023, nodeadm-run.service builds and mounts the instance-store RAID0 array; it is ordered
After=cloud-final.service, i.e. after the user-data script. So the user data must not wait for the
mount (it would time out and delay kubelet): it installs a systemd unit ordered after
nodeadm-run and starts it without blocking; worker pods wait for the sync's manifest.
"""

from __future__ import annotations

import email
import re
from typing import Any

import pytest

from sdq_contracts import naming
from sdq_k8s.render import (
    MODEL_MANIFEST_RELPATH,
    MODELS_MOUNT,
    NODE_SYNC_INSTALL_PATH,
    NODE_SYNC_UNIT,
    NODEADM_RUN_UNIT,
    RAID_MOUNT,
    Knobs,
    model_manifest_path,
)

pytestmark = pytest.mark.unit


def _shell_part(user_data: str) -> str:
    message = email.message_from_string(user_data)
    assert message.is_multipart()
    (part,) = [p for p in message.walk() if p.get_content_type() == "text/x-shellscript"]
    payload = part.get_payload()
    assert isinstance(payload, str)
    return payload


def _heredoc(shell: str, target: str) -> str:
    match = re.search(rf"^cat > {re.escape(target)} <<'(\w+)'\n(.*?)^\1$", shell, re.M | re.S)
    assert match, f"no heredoc writing {target}"
    return match.group(2)


def _unit(unit_text: str) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in unit_text.splitlines():
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
        elif "=" in line:
            key, value = line.split("=", 1)
            current.setdefault(key, []).append(value)
    return sections


def _user_data(rendered: Any) -> str:
    (nodeclass,) = rendered.of_kind("EC2NodeClass")
    return str(nodeclass["spec"]["userData"])


def _shell_without_heredocs(shell: str) -> str:
    return re.sub(r"<<'(\w+)'\n.*?^\1$", "<<HEREDOC", shell, flags=re.M | re.S)


def test_sync_runs_from_a_unit_ordered_after_nodeadm_run(rendered: Any) -> None:
    shell = _shell_part(_user_data(rendered))
    unit = _unit(_heredoc(shell, f"/etc/systemd/system/{NODE_SYNC_UNIT}"))
    after = " ".join(unit["Unit"]["After"]).split()
    wants = " ".join(unit["Unit"]["Wants"]).split()
    # nodeadm-run (setup-local-disks raid0 + kubelet start) must have finished first.
    assert NODEADM_RUN_UNIT in after and NODEADM_RUN_UNIT in wants
    assert "network-online.target" in after
    service = unit["Service"]
    assert service["Type"] == ["oneshot"]
    assert service["ExecStart"] == [f"{NODE_SYNC_INSTALL_PATH} --require-mount {RAID_MOUNT}"]
    assert service["TimeoutStartSec"] == [str(Knobs().boot_sync_timeout_seconds)]
    assert service["Restart"] == ["on-failure"]  # retried, bounded by StartLimitBurst
    assert int(unit["Unit"]["StartLimitBurst"][0]) >= 2
    # Never Before= kubelet / nodeadm-run: the sync must not hold up node registration.
    assert "Before" not in unit["Unit"]
    assert "RequiredBy" not in unit.get("Install", {})


def test_user_data_never_waits_in_cloud_init(rendered: Any) -> None:
    shell = _shell_part(_user_data(rendered))
    _without = _shell_without_heredocs(shell)
    # The old script polled `mountpoint` for 120 s and then ran the sync inline.
    for blocking in ("mountpoint", "sleep", "seq ", "until ", "while ", "timeout "):
        assert blocking not in _without, f"cloud-init part still blocks: {blocking!r}"
    assert NODE_SYNC_INSTALL_PATH not in re.sub(r"^(chmod|cat) .*$", "", _without, flags=re.M)
    commands = [line for line in shell.splitlines() if line.startswith("systemctl")]
    assert commands == [
        "systemctl daemon-reload",
        f"systemctl enable {NODE_SYNC_UNIT}",
        f"systemctl start --no-block {NODE_SYNC_UNIT}",
    ]


def test_the_unit_reads_the_env_file_the_user_data_writes(rendered: Any) -> None:
    shell = _shell_part(_user_data(rendered))
    unit = _unit(_heredoc(shell, f"/etc/systemd/system/{NODE_SYNC_UNIT}"))
    (env_file,) = unit["Service"]["EnvironmentFile"]
    env = dict(line.split("=", 1) for line in _heredoc(shell, env_file).splitlines() if "=" in line)
    assert env["SDQ_MODEL_CACHE_DIR"] == naming.MODEL_CACHE_HOST_PATH
    assert env["SDQ_MODEL_BUCKET"] == rendered.outputs.model_bucket
    assert env["AWS_REGION"] == rendered.config.region


def test_manifest_path_is_the_one_the_node_script_writes(node_sync_script: str) -> None:
    state_dir, manifest = MODEL_MANIFEST_RELPATH.split("/")
    assert f"state=$dest/{state_dir}\n" in node_sync_script
    assert f"manifest=$state/{manifest}\n" in node_sync_script
    assert model_manifest_path() == f"{MODELS_MOUNT}/{MODEL_MANIFEST_RELPATH}"


def test_worker_pods_wait_for_the_cache_manifest_before_starting(rendered: Any) -> None:
    workers = [
        d for d in rendered.of_kind("Deployment") if d["metadata"]["name"] != "otel-collector"
    ]
    assert workers
    for deploy in workers:
        pod = deploy["spec"]["template"]["spec"]
        (init,) = pod["initContainers"]
        env = {e["name"]: e["value"] for e in init["env"]}
        assert env["SDQ_MODEL_MANIFEST"] == model_manifest_path()
        assert 0 < int(env["SDQ_MODEL_WAIT_SECONDS"]) <= 3600  # bounded
        (mount,) = init["volumeMounts"]
        cache = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        assert cache["hostPath"]["path"] == naming.MODEL_CACHE_HOST_PATH
        assert mount["mountPath"] == MODELS_MOUNT and mount["readOnly"] is True
        script = init["command"][-1]
        assert '[ -f "$SDQ_MODEL_MANIFEST" ]' in script and "exit 1" in script
        assert init["securityContext"]["runAsNonRoot"] is True
        runtime = next(c for c in pod["containers"] if c["name"] == "runtime")
        assert any(m["mountPath"] == MODELS_MOUNT for m in runtime["volumeMounts"])
