"""A broadcast by gossip, cut by a partition: the lab records every message and draws it.

python examples/lab/gossip_partition.py        # then: fluentfn lab diagram lab-gossip
"""

import time

import fluentfn as ff
from fluentfn import lab


@ff.actor(name="GossipNode", shards=2)
class GossipNode:
    def __init__(self) -> None:
        self.seen: set[int] = set()

    def gossip(self, v: int, peers: list[str]) -> None:
        if v not in self.seen:
            self.seen.add(v)
            for p in peers:
                GossipNode[p].gossip.tell(v, [q for q in peers if q != p])

    def read(self) -> list[int]:
        return sorted(self.seen)


if __name__ == "__main__":
    with ff.init():
        lab.seed_faults(42)
        lab.record("lab-gossip")
        lab.partition(["GossipNode/n1"], ["GossipNode/n3"])  # n1 and n3 cannot talk; n2 relays
        for v in range(3):
            GossipNode["n1"].gossip(v, ["n2", "n3"])
        time.sleep(1.0)
        print({n: GossipNode[n].read() for n in ("n1", "n2", "n3")})
        lab.heal()
        lab.stop_recording()
        print(len(lab.messages("lab-gossip")), "messages in lab-gossip/messages.jsonl")
