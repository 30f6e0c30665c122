"""Scale-in of a sized group in the pure planner: outdated config first, then out of service,
then Update.TerminationPolicy; protected instances never; survivors beyond the size move into
the slots their victims freed (relabelled, not re-provisioned), and every step is derivable
from the instances' tags alone."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from test_plan import World
from test_plan_surge import group, member

from infrakit.group.plan import Phase, SlotStatus, plan
from infrakit.spec import TAG_PROTECTED, GroupSpec
from infrakit.spi import Description
from infrakit.spi.instance import TAG_LOGICAL_ID


def running(spec: GroupSpec, count: int) -> tuple[list[Description], dict[str, SlotStatus]]:
    """`count` running instances i0.. in slots g-0.., made at times 100, 101..."""
    members = [member(f"i{n}", f"g-{n}", spec) for n in range(count)]
    status = {
        f"g-{n}": SlotStatus(Phase.RUNNING, f"i{n}", spec.config_hash, since=100.0 + n)
        for n in range(count)
    }
    return members, status


def test_outdated_then_unhealthy_go_first_and_survivors_move_into_their_slots() -> None:
    spec, old = group(3), group(3, note="v0")
    members, status = running(spec, 5)
    members[0] = member("i0", "g-0", old)
    status["g-0"] = SlotStatus(Phase.RUNNING, "i0", old.config_hash, since=100.0)
    status["g-1"] = SlotStatus(Phase.UNHEALTHY, "i1", spec.config_hash, since=101.0)
    first = plan(spec, members, status, now=1.0)
    assert first.victims == (("g-0", "outdated config"), ("g-1", "unhealthy"))
    assert sorted(first.retire) == ["g-0", "g-1"]  # g-3 and g-4 are kept to move
    assert [(m.source, m.target, m.instance, m.ready) for m in first.moves] == [
        ("g-4", "g-0", "i4", False),
        ("g-3", "g-1", "i3", False),
    ]
    assert first.replace == () and not first.converged  # a victim is not healed nor rolled

    # The victims' actors retire: nothing changes the choice meanwhile.
    status["g-0"] = SlotStatus(Phase.RETIRING)
    status["g-1"] = SlotStatus(Phase.RETIRING)
    leaving = plan(spec, members, status, now=2.0)
    assert leaving.retire == () and leaving.victims == () and leaving.start == ()
    assert [(m.target, m.ready) for m in leaving.moves] == [("g-0", False), ("g-1", False)]

    # Both destroyed: their slots are empty, and are not provisioned: the survivors move in.
    del status["g-0"], status["g-1"]
    members = members[2:]
    freed = plan(spec, members, status, now=3.0)
    assert freed.start == () and freed.retire == ()
    assert [(m.source, m.target, m.ready) for m in freed.moves] == [
        ("g-4", "g-0", True),
        ("g-3", "g-1", True),
    ]
    assert freed.moves[0].why == "g-0 was empty"

    # Relabelled (the source actors still report their instance): adopted, sources released.
    members = [member("i2", "g-2", spec), member("i3", "g-1", spec), member("i4", "g-0", spec)]
    moved = plan(spec, members, status, now=4.0)
    assert moved.start == ("g-0", "g-1") and moved.retire == ()
    assert moved.release == ("g-3", "g-4") and moved.moves == ()


def test_the_victims_reason_is_named_in_the_move() -> None:
    spec = group(2)
    members, status = running(spec, 3)
    status["g-0"] = SlotStatus(Phase.UNHEALTHY, "i0", spec.config_hash)
    result = plan(spec, members, status, now=1.0)
    assert result.victims == (("g-0", "unhealthy"),)
    assert result.moves[0].why == "scale-in removed g-0 (unhealthy)"


def test_termination_policy_oldest_and_newest_by_creation_time() -> None:
    members, status = running(group(3), 5)
    status["g-1"] = SlotStatus(Phase.RUNNING, "i1", group(3).config_hash, since=50.0)  # oldest
    status["g-3"] = SlotStatus(Phase.RUNNING, "i3", group(3).config_hash, since=200.0)  # newest
    oldest = plan(group(3, TerminationPolicy="Oldest"), members, status, now=1.0)
    assert [lid for lid, _ in oldest.victims] == ["g-1", "g-0"]
    assert oldest.victims[0][1] == "TerminationPolicy Oldest: oldest"
    newest = plan(group(3, TerminationPolicy="Newest"), members, status, now=1.0)
    assert [lid for lid, _ in newest.victims] == ["g-3", "g-4"]
    assert newest.moves == ()  # both victims beyond the size: nothing to move
    highest = plan(group(3), members, status, now=1.0)
    assert [lid for lid, _ in highest.victims] == ["g-4", "g-3"]


def test_a_protected_instance_is_never_chosen() -> None:
    spec, old = group(3), group(3, note="v0")
    members, status = running(spec, 5)
    members[0] = member("i0", "g-0", old, **{TAG_PROTECTED: "true"})  # outdated but protected
    members[4] = member("i4", "g-4", spec, **{TAG_PROTECTED: "true"})
    status["g-0"] = SlotStatus(Phase.RUNNING, "i0", old.config_hash)
    status["g-1"] = SlotStatus(Phase.UNHEALTHY, "i1", spec.config_hash)
    result = plan(spec, members, status, now=1.0)
    assert result.victims == (("g-1", "unhealthy"),)
    assert result.protected_held == ("g-4",) and "g-0" not in result.retire
    assert [(m.source, m.target) for m in result.moves] == [("g-3", "g-1")]


def test_nothing_is_chosen_before_every_actor_has_reported() -> None:
    """Killed after a victim was destroyed, before its survivor was relabelled: the restarted
    runtime finds slot g-0 empty and g-3 beyond the size. It provisions nothing in g-0 and
    removes nothing until g-3's actor says whether its instance runs; then it moves it."""
    spec = group(3)
    members = [member(f"i{n}", f"g-{n}", spec) for n in (1, 2, 3)]
    restarted = plan(spec, members, {}, now=1.0)
    assert restarted.start == ("g-1", "g-2", "g-3") and restarted.retire == ()
    status = {lid: SlotStatus(Phase.PENDING) for lid in ("g-1", "g-2", "g-3")}
    assert plan(spec, members, status, now=2.0).retire == ()
    status = {f"g-{n}": SlotStatus(Phase.RUNNING, f"i{n}", spec.config_hash) for n in (1, 2, 3)}
    reported = plan(spec, members, status, now=3.0)
    assert reported.start == () and reported.retire == ()
    assert [(m.source, m.target, m.ready) for m in reported.moves] == [("g-3", "g-0", True)]


def test_nothing_is_replaced_while_the_scale_in_waits_for_reports() -> None:
    """After a restart, the outdated g-0 is not rolled before g-1 has reported: it is the
    victim once g-1 has, and replacing it first would make an instance only to remove one."""
    spec, old = group(1), group(1, note="v0")
    members = [member("i0", "g-0", old), member("i1", "g-1", spec)]
    status = {
        "g-0": SlotStatus(Phase.RUNNING, "i0", old.config_hash),
        "g-1": SlotStatus(Phase.PENDING),
    }
    waiting = plan(spec, members, status, now=1.0)
    assert waiting.replace == () and waiting.retire == ()
    status["g-1"] = SlotStatus(Phase.RUNNING, "i1", spec.config_hash)
    decided = plan(spec, members, status, now=2.0)
    assert decided.victims == (("g-0", "outdated config"),) and decided.replace == ()


def test_a_survivor_not_running_is_removed_and_its_slot_provisioned() -> None:
    spec = group(3)
    members = [member(f"i{n}", f"g-{n}", spec) for n in (1, 2, 3)]
    status = {f"g-{n}": SlotStatus(Phase.RUNNING, f"i{n}", spec.config_hash) for n in (1, 2)}
    status["g-3"] = SlotStatus(Phase.UNHEALTHY, "i3", spec.config_hash)
    result = plan(spec, members, status, now=1.0)
    assert result.moves == () and result.retire == ("g-3",) and result.start == ("g-0",)


def test_without_relabelling_the_highest_slots_go() -> None:
    spec, old = group(3), group(3, note="v0")
    members, status = running(spec, 5)
    members[0] = member("i0", "g-0", old)
    result = plan(spec, members, status, now=1.0, can_move=False)
    assert result.retire == ("g-3", "g-4") and result.moves == () and result.victims == ()


def test_a_moved_instance_is_never_destroyed_by_its_old_slot() -> None:
    """The Label call succeeded but its reply was lost: the old slot's actor still reports the
    instance, which now carries the wanted slot's tag. It is released, not retired."""
    spec = group(2)
    members = [member("i0", "g-0", spec), member("i2", "g-1", spec)]
    status = {
        "g-0": SlotStatus(Phase.RUNNING, "i0", spec.config_hash),
        "g-2": SlotStatus(Phase.RUNNING, "i2", spec.config_hash),
    }
    result = plan(spec, members, status, now=1.0, can_move=False)
    assert result.retire == () and result.release == ("g-2",) and result.start == ("g-1",)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=2, max_value=7),
    st.data(),
)
def test_any_scale_in_with_a_restart_anywhere_keeps_the_survivors(
    size: int, data: st.DataObject
) -> None:
    """From `size` running instances (at most as many outdated as go) down to a smaller size,
    with every actor
    forgotten at one tick (a runtime killed and started again): the group ends with exactly the
    new size, in its slots, nothing provisioned, and the outdated ones gone first."""
    smaller = data.draw(st.integers(min_value=0, max_value=size - 1))
    outdated = data.draw(st.sets(st.integers(0, size - 1), max_size=size - smaller))
    restart_at = data.draw(st.integers(0, 12))
    spec, old = group(smaller), group(smaller, note="v0")
    world = World(spec=spec)
    for n in range(size):
        made = old if n in outdated else spec
        world.instances[f"i{n}"] = member(f"i{n}", f"g-{n}", made)
        world.status[f"g-{n}"] = SlotStatus(Phase.RUNNING, f"i{n}", made.config_hash)
    before = set(world.instances)
    result = None
    for now in range(1, 40):
        if now == restart_at:
            world.status = {}
        result, _, _ = world.tick(float(now))
        assert set(world.instances) <= before, "an instance was provisioned"
        if result.converged and now > restart_at:
            break
    assert result is not None and result.converged
    lids = sorted(m.tags[TAG_LOGICAL_ID] for m in world.instances.values())
    assert lids == sorted(f"g-{n}" for n in range(smaller))
    gone = before - set(world.instances)
    assert len(gone) == size - smaller
    old_ones = {f"i{n}" for n in outdated}
    assert old_ones <= gone
