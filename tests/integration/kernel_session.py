"""Run one Jupyter kernel of the local ROOT environment like JupyterLab would, for tests: optionally hand it
attachments over rucio-jupyterlab's comm protocol first, then execute cells; prints JSON (the comm messages the
kernel sent and each cell's output text; displays as their MIME types). Runs with .venvs/singleuser's Python
(jupyter_client).

    python kernel_session.py KERNEL_NAME '<json: {"inject": [...], "cells": [...]}>'
"""

import json
import sys
import time
import uuid

import jupyter_client


def main() -> int:
    name, plan = sys.argv[1], json.loads(sys.argv[2])
    manager = jupyter_client.KernelManager(kernel_name=name)
    manager.start_kernel()
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=120)
        sent = []
        if plan.get("inject"):
            comm_id = uuid.uuid4().hex
            client.shell_channel.send(
                client.session.msg(
                    "comm_open", {"comm_id": comm_id, "target_name": "rucio-jupyterlab:kernel", "data": {}}
                )
            )
            client.shell_channel.send(
                client.session.msg(
                    "comm_msg", {"comm_id": comm_id, "data": {"action": "inject", "dids": plan["inject"]}}
                )
            )
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not any(m.get("action") == "ack-inject" for m in sent):
                try:
                    msg = client.get_iopub_msg(timeout=1)
                except Exception:  # noqa: BLE001 - queue.Empty: keep waiting
                    continue
                if msg["msg_type"] in ("comm_open", "comm_msg"):
                    sent.append(
                        {
                            "type": msg["msg_type"],
                            **(msg["content"].get("data") or {}),
                            "target": msg["content"].get("target_name"),
                        }
                    )
        outputs = []
        for code in plan.get("cells", []):
            texts = []

            def hook(msg, texts=texts):
                content = msg["content"]
                if msg["msg_type"] == "stream":
                    texts.append(content["text"])
                elif msg["msg_type"] in ("execute_result", "display_data"):
                    html = content["data"].get("text/html", "")
                    texts.append(
                        f"[{' '.join(sorted(content['data']))}{' with a script' if '<script' in html else ''}]"
                    )
                elif msg["msg_type"] == "error":
                    texts.append(f"{content['ename']}: {content['evalue']}")

            client.execute_interactive(code, output_hook=hook, timeout=300)
            outputs.append("".join(texts))
        print(json.dumps({"comm": sent, "outputs": outputs}))
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
