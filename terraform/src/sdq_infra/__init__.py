"""sdq infrastructure as code: cdktf (Python) stacks synthesized to Terraform JSON.

cdktf is archived upstream, so everything that imports it lives in this package only.
"""

import os

# jsii (cdktf's Node.js bridge) prints a banner about the Node.js support window on every
# start; the machine's Node.js is what it is. Set before anything imports cdktf.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "18,20")
