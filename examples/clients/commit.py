"""Commit a group to a running `infrakit run` with plain pyzmq (no infrakit import).

python examples/clients/commit.py group.json [ipc:///root/.infrakit/plugins/group]
"""

import json
import os
import sys

import zmq

home = os.environ.get("INFRAKIT_HOME", os.path.expanduser("~/.infrakit"))
endpoint = sys.argv[2] if len(sys.argv) > 2 else f"ipc://{home}/plugins/group"
with open(sys.argv[1]) as file:
    spec = json.load(file)

socket = zmq.Context().socket(zmq.DEALER)
socket.setsockopt(zmq.LINGER, 0)
socket.connect(endpoint)
request = {"jsonrpc": "2.0", "id": 1, "method": "Group.CommitGroup", "params": {"Spec": spec}}
socket.send_json(request)
if not socket.poll(10_000):
    sys.exit(f"no answer from {endpoint}")
reply = socket.recv_json()
if "error" in reply:
    sys.exit(f"error: {reply['error']['message']}")
print(f"Committed {spec['ID']}: {reply['result']['Details']}")
