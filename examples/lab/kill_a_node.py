"""Kill one node of a replicated-log experiment, in stateful mode and on the FaaS baseline,
and let the checker judge what clients saw.

    python examples/lab/kill_a_node.py            # both modes; writes lab-kill-stateful/ and lab-kill-faas/

In stateful mode each node gets a host of its own (``lab.own_hosts``), so ``lab.kill``
kills only that node's process; Ray restarts it and the log comes back from the store.
On the FaaS baseline ``lab.kill`` ends the execution environment running the node's
invocation. Either way no acknowledged message may be lost.
"""

from __future__ import annotations

import time
from pathlib import Path

import fluentfn as ff
from fluentfn import lab


@ff.actor(name="ExampleLog", max_hosts=8)
class ExampleLog:
    def __init__(self) -> None:
        self.msgs: list[int] = []

    def send(self, msg: int) -> int:
        self.msgs.append(msg)
        return len(self.msgs) - 1

    def poll(self, start: int) -> list[list[int]]:
        return [[o, m] for o, m in enumerate(self.msgs) if o >= start]


def experiment(mode: str) -> dict[str, object]:
    out = Path(f"lab-kill-{mode}")
    out.mkdir(exist_ok=True)
    with ff.init(mode=mode):
        nodes = (
            lab.own_hosts("ExampleLog", 3, prefix=f"log-{int(time.time())}-")
            if mode == "stateful"
            else [f"log-{int(time.time())}-{i}" for i in range(3)]
        )
        rec = lab.Recorder()
        for i in range(60):
            node = nodes[i % 3]
            if i == 20:
                print(mode, "killed pid", lab.kill(f"ExampleLog/{node}"))
            rec.invoke(0, "send", [node, i])
            try:
                offset = ExampleLog[node].send.with_timeout(10.0)(i)
            except (ff.CallTimeout, ff.Unavailable):
                rec.info(0)  # it may have been appended
            else:
                rec.ok(0, [node, i, offset])
        for node in nodes:
            rec.invoke(f"final:{node}", "poll", [node, 0])
            rec.ok(f"final:{node}", [node, ExampleLog[node].poll.with_timeout(30.0)(0)])
        rec.write(out / "history.jsonl")
        verdict = lab.CHECKERS["kafka"](rec.events)
    print(mode, {k: verdict[k] for k in ("valid", "sends_acknowledged", "lost_count")})
    return verdict


if __name__ == "__main__":
    for mode in ("stateful", "faas"):
        experiment(mode)
