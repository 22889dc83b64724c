"""Bank transfers between accounts, exactly once, while hosts die (the reliability suite's workload).

A ``Teller`` identity per transfer moves money with two nested calls (withdraw, deposit).
Every call is durable (persist="call") and deduplicated by request id; nested calls get
ids derived from the teller's, so a retried transfer re-sends the same ids and each
account applies each transfer exactly once. Accounts keep a ledger to prove it.

    python examples/bank.py          # 200 transfers in both modes
"""

from __future__ import annotations

import random
from typing import Any

import fluentfn as ff


class _Account:
    def __init__(self) -> None:
        self.balance = 0
        self.ledger: list[list[Any]] = []  # [transfer id, delta]

    def open(self, amount: int) -> int:
        if not self.ledger:
            self.balance = amount
            self.ledger.append(["open", amount])
        return self.balance

    def apply(self, tid: str, delta: int) -> int:
        self.balance += delta
        self.ledger.append([tid, delta])
        return self.balance

    def statement(self) -> dict[str, Any]:
        return {"balance": self.balance, "ledger": self.ledger}


Account = ff.actor(name="BankAccount", shards=4)(_Account)


class _Teller:
    def __init__(self) -> None:
        self.done = False

    def transfer(self, src: str, dst: str, amount: int) -> bool:
        if self.done:
            return True
        tid = ff.context().key or ""
        Account[src].apply(tid, -amount)
        Account[dst].apply(tid, amount)
        self.done = True
        return True

    def status(self) -> bool:
        return self.done


Teller = ff.actor(name="BankTeller", shards=4)(_Teller)


def open_accounts(n: int, amount: int = 1000) -> list[str]:
    names = [f"acct-{i}" for i in range(n)]
    Account.bulk("open", {name: (amount,) for name in names})
    return names


def random_transfer(names: list[str], rng: random.Random, tid: str) -> bool:
    src, dst = rng.sample(names, 2)
    return bool(Teller[tid].transfer(src, dst, rng.randint(1, 50)))


def audit(names: list[str], acked: set[str], opening: int = 1000) -> dict[str, Any]:
    """Check the invariants: money conserved, each acknowledged transfer applied exactly once."""
    statements = Account.bulk("statement", {name: () for name in names})
    total = sum(s["balance"] for s in statements.values())
    seen: dict[str, list[int]] = {}
    for s in statements.values():
        for tid, delta in s["ledger"]:
            if tid != "open":
                seen.setdefault(tid, []).append(delta)
    lost = [t for t in acked if len(seen.get(t, [])) != 2]
    duplicated = [t for t, d in seen.items() if len(d) > 2]
    unbalanced = [t for t, d in seen.items() if sum(d) != 0]
    unacked_applied = [t for t in seen if t not in acked]
    return {
        "total": total,
        "expected_total": opening * len(names),
        "acked": len(acked),
        "lost": len(lost),
        "duplicated": len(duplicated),
        "unbalanced": len(unbalanced),
        "applied_not_acked": len(unacked_applied),
    }


def main() -> None:
    for mode in ("stateful", "faas"):
        with ff.init(mode=mode, namespace=f"bank-{mode}"):
            print(f"{mode}: running the bank case study ...", flush=True)
            names = open_accounts(10)
            rng = random.Random(1)
            acked = {f"t{i}" for i in range(200) if random_transfer(names, rng, f"t{i}")}
            print(mode, audit(names, acked))


if __name__ == "__main__":
    main()
