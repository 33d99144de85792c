"""The fleet part of ``headwater demo`` tells its whole story on a fresh workspace."""

from headwater.demo import examples_dir, fleet_story


def test_the_fleet_story_runs_end_to_end(ws):
    result: dict = {}
    assert fleet_story(ws, examples_dir() / "fleet", None, result, workers=0)
    fleet = result["fleet"]
    assert fleet["top_suspect"] == fleet["bad_version"] and fleet["status_after_monitor"] == "degraded"
    assert fleet["tainted"] == 3 and fleet["radius"]["workflows"] == 3
    assert fleet["sandboxed"] and fleet["paused_run"] == "interrupted" and fleet["unaffected_ran"]
    assert fleet["canary"] == "passed" and fleet["inconsistencies_after"] == 0
    assert {(r["workflow"], r["why"]) for r in fleet["rerun"]} == {
        ("tower-drop", "affected"), ("tower-pendulum", "affected"), ("monument", "affected"),
        ("tower-pendulum", "paused")}
    assert all(r["kept"] == ["measure"] for r in fleet["rerun"] if r["workflow"] != "monument")
