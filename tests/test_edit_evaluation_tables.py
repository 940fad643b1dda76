"""The edit-evaluation benchmark's tables: which strength meets the goal, the correlated pair, continuous shifts."""

from benchmarks.edit_evaluation import best_rows, continuous_rows, pair_cut_rows, pair_rows

BINARY, PAIR = ["a", "b", "c", "d"], ["a", "b"]


def row(direction, target, strength, flip, b=0.0, c=0.0, d=0.0, delta=0.0):
    return {"direction": direction, "target": target, "strength": strength, "flip_rate": flip, "num_eligible": 10,
            "target_delta": delta, "pixel_change": abs(strength) / 10, "change:a": 0.0, "change:b": b,
            "change:c": c, "change:d": d, "dscore:y": abs(strength) / 100, "dscore:z": 0.0}


def test_best_row_is_the_smallest_strength_reaching_the_flip_goal_and_checks_interference():
    rows = [row("interfacegan-a", "a", s, f, b=0.3, c=0.05, d=i)
            for s, f, i in [(1, 0.5, 0.0), (2, 0.92, 0.08), (3, 0.99, 0.2), (-1, 0.4, 0.0), (-2, 0.6, 0.3)]]
    best = best_rows(rows, BINARY, PAIR)
    assert [(r["strength"], r["goal"]) for r in best] == [(2, "yes"), (-2, "no")]  # -2: best flip, not reached
    assert best[0]["partner_change"] == 0.3  # b is a's partner: reported apart, not counted as interference
    assert best[0]["interference_max"] == "0.08 (d)" and abs(best[0]["interference_mean"] - 0.065) < 1e-12
    assert best[1]["interference_max"] == "0.30 (d)"


def test_pair_rows_compare_plain_and_conditional_partner_change():
    rows = [row("interfacegan-a", "a", 2, 0.8, b=0.4), row("interfacegan-a|b", "a", 2, 0.7, b=0.1)]
    assert pair_rows(rows, PAIR) == [dict(strength=2, flip_plain=0.8, flip_conditional=0.7, b_change_plain=0.4,
                                          b_change_conditional=0.1)]


def test_pair_cut_compares_the_partners_change_at_equal_flip():
    # a: plain reaches 90 % flip half-way between 1 and 2 (b change 0.3 there), conditional at 2 (b change 0.06)
    rows = [row("interfacegan-a", "a", 1, 0.8, b=0.2), row("interfacegan-a", "a", 2, 1.0, b=0.4),
            row("interfacegan-a|b", "a", 1, 0.5, b=0.02), row("interfacegan-a|b", "a", 2, 0.9, b=0.06),
            row("interfacegan-a", "a", -1, 0.95, b=0.1), row("interfacegan-a|b", "a", -1, 0.6, b=0.0)]
    cuts = {(r["direction"], r["sign"]): r for r in pair_cut_rows(rows, PAIR)}
    plus = cuts["a|b", "+"]
    assert abs(plus["partner_change_plain"] - 0.3) < 1e-12 and abs(plus["partner_change_conditional"] - 0.06) < 1e-12
    assert abs(plus["cut"] - 0.8) < 1e-12 and plus["goal"] == "yes"
    minus = cuts["a|b", "-"]  # the conditional never reaches the flip: no cut, not met
    assert minus["partner_change_conditional"] is None and minus["cut"] is None and minus["goal"] == "no"
    assert cuts["b|a", "+"]["cut"] is None  # b's boundaries were not tried


def test_continuous_rows_report_the_shift_per_unit_strength():
    rows = [row("interfacegan-x", "x", s, float("nan"), delta=0.25 * s) for s in (-2, -1, 1, 2)]
    (only,) = continuous_rows(rows, BINARY)
    assert abs(only["shift_per_unit"] - 0.25) < 1e-12 and only["max_other_shift_at_1"] == "0.010 (y)"


def test_another_judge_needs_a_gan_run(capsys):
    import pytest

    from benchmarks import edit_evaluation, faces64_quality

    with pytest.raises(SystemExit, match="--classifier judges a --gan-run"):
        edit_evaluation.main(["--faces64", "--classifier", "x.safetensors", "--num-fit", "10"])
    with pytest.raises(SystemExit):
        faces64_quality.main(["--classifier", "x.safetensors", "--n", "4"])
    assert "--classifier measures a --gan-run" in capsys.readouterr().err
