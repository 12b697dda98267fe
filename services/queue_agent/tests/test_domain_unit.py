"""Pure domain pieces: message parsing, input fields, SSRF policy, request shaping, settings."""

from __future__ import annotations

import ast
import base64
import io
import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

import sdq_queue_agent.domain as domain_pkg
from sdq_contracts.messages import TaskMessage
from sdq_contracts.requests import TaskType
from sdq_queue_agent.domain import comfyui_graph, sdwebui_body
from sdq_queue_agent.domain.inputs import (
    classify,
    comfyui_input_refs,
    decode_data_uri,
    sdwebui_input_refs,
)
from sdq_queue_agent.domain.model import InputRef, ReceivedMessage
from sdq_queue_agent.domain.parsing import PoisonMessage, parse_task
from sdq_queue_agent.domain.ssrf import address_refusal, redact_url
from sdq_queue_agent.errors import InputRefusedError, InvalidTaskError, UnknownScriptError
from sdq_queue_agent.settings import SettingsError, load_settings
from sdq_queue_agent.signing import sign, verify

pytestmark = pytest.mark.unit

FORBIDDEN = {"boto3", "aioboto3", "botocore", "aiobotocore", "aiohttp", "os"}


def test_domain_imports_no_io_libraries_or_environment() -> None:
    for path in Path(domain_pkg.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
        attrs = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        assert not attrs & {"environ", "getenv"}, path.name


def _task(**kw: object) -> dict[str, object]:
    return {
        "id": "t1",
        "runtime": "sd",
        "tasktype": "text-to-image",
        "content": {"prompt": "x"},
    } | kw


def test_parse_raw_and_sns_envelope() -> None:
    raw = json.dumps(_task())
    assert parse_task(raw).id == "t1"
    envelope = json.dumps({"Type": "Notification", "Message": raw, "TopicArn": "arn"})
    assert parse_task(envelope).id == "t1"


@pytest.mark.parametrize(
    ("body", "task_id"),
    [
        ("not json", None),
        ("[1, 2]", None),
        (json.dumps({"id": "t9", "runtime": "sd"}), "t9"),
        (json.dumps({"id": "../bad", "x": 1}), None),
    ],
)
def test_poison_messages(body: str, task_id: str | None) -> None:
    with pytest.raises(PoisonMessage) as info:
        parse_task(body)
    assert info.value.task_id == task_id


def test_trace_id_from_header() -> None:
    msg = ReceivedMessage(
        "m",
        "h",
        "{}",
        1,
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
    )
    assert msg.trace_id == "1-5759e988-bd862e3fe1be46a994272793"


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("https://x/y.png", "http"),
        ("s3://b/k.png", "s3"),
        ("iVBORw0KGgo=", "inline"),
        ("data:image/png;base64,AAA", "data"),
        ("input.png", "inline"),
    ],
)
def test_classify(value: str, kind: str) -> None:
    assert classify(value) == kind


def test_data_uris_decode_to_images_within_the_cap() -> None:
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 32).decode()
    assert decode_data_uri(f"data:image/png;base64,{png}", 1024) == (
        b"\x89PNG\r\n\x1a\n" + b"0" * 32,
        "image/png",
    )
    for bad, why in [
        ("data:text/plain;base64,QUJD", "image"),
        ("data:image/png,raw-not-base64", "base64 data URI"),
        ("data:image/png;base64,@@@", "not valid base64"),
        (f"data:image/png;base64,{'A' * 4000}", "larger than"),
    ]:
        with pytest.raises(InputRefusedError, match=why):
            decode_data_uri(bad, 1024)


def test_comfyui_uploads_data_uris_but_sdwebui_takes_them_inline() -> None:
    uri = "data:image/png;base64,AAAA"
    graph = {"1": {"class_type": "LoadImage", "inputs": {"image": uri}}}
    assert [r.url for r in comfyui_input_refs(graph)] == [uri]
    assert sdwebui_input_refs({"init_images": [uri], "image": "s3://b/k.png"}) == [
        InputRef(("image",), "s3://b/k.png")
    ]


@pytest.mark.parametrize("value", ["file:///etc/passwd", "gopher://x/", "ftp://h/x.png"])
def test_classify_refuses_other_schemes(value: str) -> None:
    with pytest.raises(InputRefusedError):
        classify(value)


def test_only_explicit_fields_are_inputs() -> None:
    body = {
        "prompt": "http://ignored.example/a.png",
        "init_images": ["https://a/1.png", "AAAA"],
        "mask": "s3://b/m.png",
        "imageList": [{"data": "https://a/2.png", "name": "x"}, {"data": "BBBB"}],
        "alwayson_scripts": {"controlnet": {"args": [{"image": "https://not/fetched.png"}]}},
    }
    assert [r.path for r in sdwebui_input_refs(body)] == [
        ("init_images", 0),
        ("mask",),
        ("imageList", 0, "data"),
    ]
    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "https://a/b.png"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "https://not/an/input"}},
        "3": {"class_type": "LoadImage", "inputs": {"image": "local.png"}},
    }
    assert [r.path for r in comfyui_input_refs(graph)] == [("1", "inputs", "image")]


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("127.0.0.2", "loopback"),
        ("10.0.0.1", "private"),
        ("169.254.169.254", "metadata"),
        ("169.254.1.1", "link-local"),
        ("::ffff:10.0.0.1", "private"),
        ("fd00:ec2::254", "metadata"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("93.184.216.34", None),
        # issue 14: every address that is not globally routable, wrapped forms unwrapped
        ("100.64.0.1", "not globally routable"),  # carrier-grade NAT (EKS custom networking)
        ("::ffff:100.64.0.1", "not globally routable"),
        ("2002:a9fe:a9fe::1", "metadata"),  # 6to4 carrying 169.254.169.254
        ("2002:0a00:0001::1", "private"),  # 6to4 carrying 10.0.0.1
        ("2002:5db8:d822::1", None),  # 6to4 carrying a public address
        ("64:ff9b::a9fe:a9fe", "metadata"),  # NAT64 carrying the metadata address
        ("64:ff9b::7f00:1", "loopback"),
        ("64:ff9b::5db8:d822", None),
        ("64:ff9b:1::a00:1", "tunnelled"),  # local-use NAT64
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "tunnelled"),  # Teredo
        ("::a9fe:a9fe", "metadata"),  # IPv4-compatible
        ("::ffff:0:a00:1", "private"),  # IPv4-translated
        ("198.18.0.1", "private"),  # benchmarking
        ("192.0.0.170", "private"),
        ("240.0.0.1", "reserved"),
        ("fc00::1", "private"),
        ("2001:db8::1", "private"),  # documentation
        ("2606:4700::1111", None),
    ],
)
def test_address_policy(address: str, refused: str | None) -> None:
    reason = address_refusal(ipaddress.ip_address(address))
    assert (reason is None) if refused is None else (refused in (reason or ""))


def test_allowlist_overrides_policy_but_not_for_others() -> None:
    allow = (ipaddress.ip_network("127.0.0.1/32"),)
    assert address_refusal(ipaddress.ip_address("127.0.0.1"), allow) is None
    assert address_refusal(ipaddress.ip_address("127.0.0.2"), allow) is not None


def test_redact_url_drops_query() -> None:
    assert (
        redact_url("https://h:8443/p/x.png?X-Amz-Signature=abc")
        == "https://h:8443/p/x.png?<redacted>"
    )


def test_v1alpha1_routing_keys_stripped_and_image_link_mapped() -> None:
    body = {
        "prompt": "p",
        "alwayson_scripts": {
            "task": "image-to-image",
            "sd_model_checkpoint": "m",
            "id_task": "t",
            "image_link": "https://x/a.png",
            "save_dir": "out",
            "controlnet": {"args": []},
        },
    }
    out = sdwebui_body.normalize_v1alpha1(TaskType.IMAGE_TO_IMAGE, body)
    assert out["alwayson_scripts"] == {"controlnet": {"args": []}}
    assert out["init_images"] == ["https://x/a.png"]
    single = sdwebui_body.normalize_v1alpha1(
        TaskType.EXTRA_SINGLE_IMAGE, {"alwayson_scripts": {"task": "x", "image_link": "u"}}
    )
    assert single == {"image": "u"}
    batch = sdwebui_body.normalize_v1alpha1(
        TaskType.EXTRA_BATCH_IMAGES, {"alwayson_scripts": {"image_link": "u"}}
    )
    assert batch["imageList"] == [{"data": "u", "name": "image_link"}]


def test_dynamic_model_request_and_model_lookup() -> None:
    task = TaskMessage(
        id="t",
        runtime="r",
        tasktype=TaskType.TEXT_TO_IMAGE,
        content={"prompt": "x"},
        sd_model_checkpoint="sd_xl_base_1.0.safetensors",
    )
    assert (
        sdwebui_body.shape(task, task.content or {}, dynamic_model=True).model
        == "sd_xl_base_1.0.safetensors"
    )
    assert sdwebui_body.shape(task, task.content or {}, dynamic_model=False).model is None
    models = [
        {
            "title": "sd_xl_base_1.0.safetensors [abc]",
            "model_name": "sd_xl_base_1.0",
            "filename": "/m/sd_xl_base_1.0.safetensors",
        }
    ]
    assert sdwebui_body.find_model(models, "sd_xl_base_1.0") == "sd_xl_base_1.0.safetensors [abc]"
    assert sdwebui_body.find_model(models, "other") is None
    body = sdwebui_body.with_model({"prompt": "x"}, "T")
    assert (
        body["override_settings"] == {"sd_model_checkpoint": "T"}
        and body["override_settings_restore_afterwards"] is False
    )


def test_sdwebui_response_images_decoded_and_elided() -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="JPEG")
    answer = {"images": [base64.b64encode(buf.getvalue()).decode()], "info": "{}"}
    files, elided = sdwebui_body.read_response(TaskType.TEXT_TO_IMAGE, answer)
    assert [(f.content_type, f.ext) for f in files] == [("image/jpeg", "jpg")]
    assert elided == {"images": ["<output 1>"], "info": "{}"}


def test_comfyui_shape_rewrites_prefixes_and_rejects_ui_format() -> None:
    task = TaskMessage(
        id="t7",
        runtime="c",
        tasktype=TaskType.PIPELINE,
        content={"9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "a/b/pic"}}},
    )
    request = comfyui_graph.shape(task, task.content or {})
    assert request.body["9"]["inputs"]["filename_prefix"] == "sdq/t7/pic"
    ui_format = TaskMessage(
        id="t8", runtime="c", tasktype=TaskType.PIPELINE, content={"nodes": [], "links": []}
    )
    with pytest.raises(InvalidTaskError):
        comfyui_graph.shape(ui_format, ui_format.content or {})


def test_comfyui_history_reading() -> None:
    entry = {
        "outputs": {
            "10": {"images": [{"filename": "b.png", "subfolder": "sdq/t", "type": "output"}]},
            "2": {
                "images": [
                    {"filename": "a.png", "subfolder": "", "type": "output"},
                    {"filename": "p.png", "subfolder": "", "type": "temp"},
                ],
                "gifs": [{"filename": "v.mp4", "subfolder": "", "type": "output"}],
            },
        },
        "status": {"status_str": "success", "messages": []},
    }
    refs = comfyui_graph.history_outputs(entry)
    assert [r.filename for r in refs if isinstance(r, comfyui_graph.OutputRef)] == [
        "a.png",
        "v.mp4",
        "b.png",
    ]
    assert len(refs) == 3
    failed = {
        "status": {
            "status_str": "error",
            "messages": [
                ["execution_start", {}],
                [
                    "execution_error",
                    {
                        "node_id": "4",
                        "node_type": "KSampler",
                        "exception_type": "RuntimeError",
                        "exception_message": "OOM",
                    },
                ],
            ],
        }
    }
    status, error = comfyui_graph.history_status(failed)
    assert status == "error" and error is not None
    assert (
        comfyui_graph.execution_error(error).message
        == "node 4 (KSampler) failed: RuntimeError: OOM"
    )
    bad = {
        "error": {"message": "Prompt outputs failed validation"},
        "node_errors": {
            "3": {
                "class_type": "KSampler",
                "errors": [{"message": "Value not in list", "details": "ckpt: x"}],
            }
        },
    }
    assert (
        comfyui_graph.prompt_error(bad)
        == "Prompt outputs failed validation; node 3 (KSampler): Value not in list: ckpt: x"
    )


def test_signature_roundtrip() -> None:
    sig = sign(b"k", 1700000000, b"{}")
    assert sig.startswith("sha256=") and verify(b"k", 1700000000, b"{}", sig)
    assert not verify(b"k", 1700000001, b"{}", sig)


ENV = {
    "SDQ_RUNTIME_NAME": "sdruntime",
    "SDQ_RUNTIME_TYPE": "sdwebui",
    "SDQ_RUNTIME_URL": "http://127.0.0.1:7860/",
    "SDQ_QUEUE_URL": "http://q",
    "SDQ_RESULT_TOPIC_ARN": "arn:t",
    "SDQ_STATUS_TABLE": "tbl",
    "SDQ_OUTPUT_BUCKET": "out-bucket",
    "SDQ_MODEL_BUCKET": "model-bucket",
    "AWS_REGION": "eu-west-1",
}


def test_settings_from_environment() -> None:
    s = load_settings(
        ENV
        | {
            "SDQ_URL_ALLOWLIST": "127.0.0.1/32, 10.1.0.0/16",
            "SDQ_TASK_TIMEOUT_SECONDS": "120",
            "SDQ_DRAIN_FILE": "/var/run/sdq/drained",
            "SDQ_WEBHOOK_SECRET": "zq-secret-9",
        }
    )
    assert s.runtime_url == "http://127.0.0.1:7860" and s.aws_region == "eu-west-1"
    assert [str(n) for n in s.url_allowlist] == ["127.0.0.1/32", "10.1.0.0/16"]
    assert s.visibility == 180 and s.input_buckets == {"out-bucket", "model-bucket"}
    assert (
        str(s.drain_file) == "/var/run/sdq/drained"
        and s.http_port == 8081
        and s.drain_seconds == 60
    )
    assert "zq-secret-9" not in repr(s)


def test_settings_errors_name_each_variable() -> None:
    env = {k: v for k, v in ENV.items() if k != "SDQ_QUEUE_URL"} | {
        "SDQ_RUNTIME_TYPE": "fooocus",
        "SDQ_URL_ALLOWLIST": "not-a-cidr",
    }
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    names = {name for name, _ in info.value.errors}
    assert {"SDQ_QUEUE_URL", "SDQ_RUNTIME_TYPE", "SDQ_URL_ALLOWLIST"} <= names


# --- what the real runtimes exposed (issue 13) -----------------------------------------


def _png_b64() -> str:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def test_comfyui_plain_base64_is_an_input_but_a_file_name_is_not() -> None:
    encoded = _png_b64()
    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": encoded}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
        "3": {"class_type": "LoadImage", "inputs": {"image": "QUJDREVGR0hJSktMTU5PUA=="}},
    }
    [ref] = comfyui_input_refs(graph)
    assert ref.path == ("1", "inputs", "image")
    assert ref.url == f"data:image/png;base64,{encoded}"
    data, content_type = decode_data_uri(ref.url, 1 << 20)
    assert content_type == "image/png" and data.startswith(b"\x89PNG")


def _message(tasktype: TaskType, content: dict[str, Any], **extra: object) -> TaskMessage:
    return TaskMessage.model_validate(
        {"id": "t", "runtime": "r", "tasktype": tasktype, "content": content, **extra}
    )


@pytest.mark.parametrize("value", ["sd_xl_base_1.0", {"args": ["sd_xl_base_1.0"]}])
def test_guide_alwayson_model_is_the_model_switch_and_never_reaches_the_runtime(
    value: object,
) -> None:
    content = {"prompt": "x", "alwayson_scripts": {"sd_model_checkpoint": value, "seed": {}}}
    task = _message(TaskType.TEXT_TO_IMAGE, content)
    dynamic = sdwebui_body.shape(task, content, dynamic_model=True)
    assert dynamic.model == "sd_xl_base_1.0"
    assert dynamic.body["alwayson_scripts"] == {"seed": {}}
    static = sdwebui_body.shape(task, content, dynamic_model=False)
    assert static.model is None
    assert static.body["override_settings"] == {"sd_model_checkpoint": "sd_xl_base_1.0"}
    assert "sd_model_checkpoint" not in static.body["alwayson_scripts"]
    only = sdwebui_body.shape(
        task, {"prompt": "x", "alwayson_scripts": {"sd_model_checkpoint": "m"}}, dynamic_model=True
    )
    assert "alwayson_scripts" not in only.body
    with pytest.raises(InvalidTaskError, match="sd_model_checkpoint"):
        sdwebui_body.shape(
            task, {"alwayson_scripts": {"sd_model_checkpoint": 3}}, dynamic_model=True
        )


def test_batch_images_get_names() -> None:
    content = {"imageList": [{"data": "AAAA"}, {"data": "BBBB", "name": "b"}]}
    request = sdwebui_body.shape(
        _message(TaskType.EXTRA_BATCH_IMAGES, content), content, dynamic_model=False
    )
    assert [i["name"] for i in request.body["imageList"]] == ["image-1", "b"]


def test_scripts_checked_against_the_runtimes_list() -> None:
    available = {"txt2img": ["x/y/z plot", "seed"], "img2img": ["seed", "soft inpainting"]}
    body: dict[str, Any] = {"alwayson_scripts": {"Seed": {}, "controlnet": {}}}
    with pytest.raises(UnknownScriptError, match="'controlnet' for txt2img") as caught:
        sdwebui_body.check_scripts(TaskType.TEXT_TO_IMAGE, body, available)
    assert caught.value.permanent and caught.value.code == "unknown_script"
    sdwebui_body.check_scripts(
        TaskType.IMAGE_TO_IMAGE, {"alwayson_scripts": {"Soft Inpainting": {}}}, available
    )
    answer = {"error": "HTTPException", "detail": "Script 'controlnet' not found"}
    assert sdwebui_body.missing_script(answer) == "controlnet"
    assert sdwebui_body.missing_script({"detail": [{"loc": ["body"]}]}) is None


@pytest.mark.parametrize(
    ("status", "payload", "request_error"),
    [
        (
            500,
            {
                "error": "AssertionError",
                "detail": "",
                "body": "",
                "errors": "could not find upscaler named X",
            },
            "AssertionError: could not find upscaler named X",
        ),
        (
            500,
            {
                "error": "HTTPException",
                "detail": "Invalid encoded image",
                "body": "",
                "errors": "",
            },
            "HTTPException: Invalid encoded image",
        ),
        (500, {"error": "OutOfMemoryError", "errors": "CUDA out of memory."}, None),
        (500, {"error": "RuntimeError", "errors": "CUDA error: out of memory"}, None),
        (500, None, None),  # plain text
        (503, {"error": "HTTPException", "errors": "503: busy"}, None),
        (502, {"error": "X", "errors": "y"}, None),
    ],
)
def test_sdwebui_request_error_or_outage(
    status: int, payload: object, request_error: object
) -> None:
    assert sdwebui_body.request_error(status, payload) == request_error


def test_comfyui_partial_acceptance_names_the_dropped_outputs() -> None:
    answer = {
        "prompt_id": "p",
        "number": 1,
        "node_errors": {
            "12": {
                "errors": [
                    {
                        "type": "value_not_in_list",
                        "message": "Value not in list",
                        "details": "upscale_method: 'x' not in [...]",
                    }
                ],
                "dependent_outputs": ["13"],
                "class_type": "ImageScaleBy",
            }
        },
    }
    assert comfyui_graph.dropped_outputs(answer) == ["13"]
    assert comfyui_graph.dropped_outputs({"prompt_id": "p", "node_errors": {}}) == []
    assert comfyui_graph.prompt_error(answer, partial=True) == (
        "ComfyUI would run only part of the workflow: outputs '13' failed validation; "
        "node 12 (ImageScaleBy): Value not in list: upscale_method: 'x' not in [...]"
    )


def test_comfyui_top_level_error_keeps_its_details() -> None:
    answer = {
        "error": {
            "type": "invalid_prompt",
            "message": "Cannot execute because node Nope does not exist.",
            "details": "Node ID '#8'",
            "extra_info": {},
        },
        "node_errors": {},
    }
    assert comfyui_graph.prompt_error(answer) == (
        "Cannot execute because node Nope does not exist. (Node ID '#8')"
    )


def test_comfyui_job_as_history() -> None:
    assert comfyui_graph.job_as_history({"id": "p", "status": "in_progress"}) is None
    status = {"status_str": "success", "completed": True, "messages": []}
    job = {
        "id": "p",
        "status": "completed",
        "outputs": {"9": {"images": []}},
        "execution_status": status,
    }
    assert comfyui_graph.job_as_history(job) == {"outputs": {"9": {"images": []}}, "status": status}
