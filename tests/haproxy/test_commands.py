"""The runtime commands' order (``gapless.haproxy.commands.plan``), replayed on a model of HAProxy's servers.

Rules:
- after all commands, every wanted server is there, ready, with its wanted weight; every other server is
  draining, or gone once it had no session left;
- a backend with a positive ready weight before and after the change keeps one after every single
  command (otherwise a request arriving between two commands is answered 503: the blue-green switch
  that once set blue to 0 before green was raised);
- nothing is sent when HAProxy already holds what is wanted.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import example, given
from hypothesis import strategies as st

from gapless.haproxy.commands import plan
from gapless.haproxy.runtime import ServerStat
from gapless.router.config import Backend

BACKENDS = ("be", "be.slot0")
NAMES = ("r1.i1", "r1.i2", "r2.i1", "r3.i1")
weight = st.one_of(st.just(0), st.integers(1, 256))


@dataclass
class Server:
    weight: int
    state: str  # ready, drain, maint
    sessions: int


def stat(name: str, s: Server) -> ServerStat:
    status = {"ready": "UP", "drain": "DRAIN", "maint": "MAINT"}[s.state]
    return ServerStat(name, status, s.weight if s.state == "ready" else 0, s.sessions, 0, 0, 0, 0, 0, {})


def capacity(servers: dict[str, Server]) -> int:
    return sum(s.weight for s in servers.values() if s.state == "ready")


def replay(model: dict[str, dict[str, Server]], command: str) -> None:
    """Apply one runtime command to the model, as HAProxy 2.6 does."""
    words = command.split()
    backend, name = words[2].split("/")
    servers = model[backend]
    match words[:2]:
        case ["add", "server"]:
            assert name not in servers, command
            servers[name] = Server(int(words[words.index("weight") + 1]), "maint", 0)
        case ["enable", "server"]:
            servers[name].state = "ready"
        case ["set", "server"] if words[3] == "weight":
            servers[name].weight = int(words[4])
        case ["set", "server"] if words[3] == "state":
            servers[name].state = words[4]
        case ["del", "server"]:
            assert servers[name].state == "maint", command
            assert servers[name].sessions == 0, command
            del servers[name]
        case _:
            raise AssertionError(command)


server = st.builds(Server, weight, st.sampled_from(["ready", "ready", "drain"]), st.integers(0, 2))
observed_backend = st.dictionaries(st.sampled_from(NAMES), server, max_size=4)
fate = st.one_of(st.none(), st.just(0), weight)
"""What becomes of a server: gone from the target (None), weight 0, or any weight."""


@st.composite
def changes(draw: st.DrawFn) -> tuple[dict[str, dict[str, Server]], dict[str, dict[str, int]]]:
    """Servers HAProxy holds, and a target derived from them (so most servers change rather than vanish)."""
    model = draw(st.fixed_dictionaries(dict.fromkeys(BACKENDS, observed_backend)))
    targets: dict[str, dict[str, int]] = {}
    for b in BACKENDS:
        fates = draw(st.fixed_dictionaries(dict.fromkeys(NAMES, fate)))
        targets[b] = {n: w for n, w in fates.items() if w is not None}
    return model, targets


@given(changes(), st.booleans())
@example(
    (
        {"be": {"r1.i1": Server(5, "ready", 0)}, "be.slot0": {}},
        {"be": {"r1.i1": 0, "r2.i1": 5}, "be.slot0": {}},
    ),
    False,
)
def test_replayed_commands_reach_the_target_and_never_empty_a_backend(
    change: tuple[dict[str, dict[str, Server]], dict[str, dict[str, int]]], restarted: bool
) -> None:
    model, targets = change
    draining = {f"{b}/{n}" for b, servers in model.items() for n, s in servers.items() if s.state == "drain"}
    applied = (
        {}
        if restarted
        else {
            f"{b}/{n}": s.weight
            for b, servers in model.items()
            for n, s in servers.items()
            if s.state == "ready"
        }
    )
    observed = {b: {n: stat(n, s) for n, s in servers.items()} for b, servers in model.items()}
    addresses = {n: Backend(id=n, port=8000 + i, revision=n[:2]) for i, n in enumerate(NAMES)}
    todo = plan(observed, targets, addresses, applied, draining)
    keep = {b for b in BACKENDS if capacity(model[b]) > 0 and sum(targets[b].values()) > 0}
    for command in todo.commands:
        replay(model, command)
        for b in keep:
            assert capacity(model[b]) > 0, f"{b} has no weight after {command!r}: {todo.commands}"
    for b in BACKENDS:
        for name, w in targets[b].items():
            assert model[b][name].state == "ready"
            assert model[b][name].weight == w
        for name, s in model[b].items():
            if name not in targets[b]:
                assert s.state == "drain", (name, s)
    gone = {key for key, _ in todo.deleted}
    assert gone == {k for k in draining if k.split("/")[1] not in targets[k.split("/")[0]]} - {
        f"{b}/{n}" for b in BACKENDS for n, s in model[b].items()
    }


def test_a_blue_green_switch_raises_green_before_it_lowers_blue() -> None:
    blue, green = "r1.i1", "r2.i1"
    observed = {
        "be": {
            blue: ServerStat(blue, "UP", 256, 3, 0, 0, 0, 0, 0, {}),
            green: ServerStat(green, "UP", 0, 0, 0, 0, 0, 0, 0, {}),
        }
    }
    todo = plan(observed, {"be": {blue: 0, green: 256}}, {}, {"be/" + blue: 256, "be/" + green: 0}, set())
    assert todo.commands == [
        f"set server be/{green} weight 256",
        f"set server be/{green} state ready",
        f"set server be/{blue} weight 0",
        f"set server be/{blue} state ready",
    ]


def test_nothing_is_sent_when_haproxy_holds_what_is_wanted() -> None:
    s = ServerStat("r1.i1", "UP", 10, 0, 0, 0, 0, 0, 0, {})
    assert not plan({"be": {"r1.i1": s}}, {"be": {"r1.i1": 10}}, {}, {"be/r1.i1": 10}, set())
    after_restart = plan({"be": {"r1.i1": s}}, {"be": {"r1.i1": 10}}, {}, {}, set())
    assert after_restart.commands == ["set server be/r1.i1 weight 10", "set server be/r1.i1 state ready"]
