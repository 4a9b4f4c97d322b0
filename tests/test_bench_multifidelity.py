"""The multi-fidelity benchmark's bookkeeping on the cheap surrogate task: budgets charged,
traces, the hyperband schedule's cost and the table (bench/multifidelity.py)."""

from __future__ import annotations

from bench import multifidelity as mf


def test_one_surrogate_seed_charges_every_method_its_epochs() -> None:
    runs = mf.run_seed("surrogate", 0)
    budget = mf.TRIALS * mf.R
    assert set(runs) == set(mf.METHODS)
    assert runs["random-full"].spent == budget  # 50 trials x 27 epochs
    for method, trace in runs.items():
        assert budget <= trace.spent < budget + mf.R, method  # stops once the budget is spent
        epochs = [e for e, _ in trace.points]
        assert epochs == list(range(1, trace.spent + 1)), method
        assert trace.best_within(budget // 3) <= trace.best_within(budget)
    # early stoppers try more configurations than random search within the same budget
    assert runs["asha"].best_within(budget) >= runs["random-full"].best_within(budget // 3)


def test_one_hyperband_pass_costs_450_epochs() -> None:
    trace = mf.run_hyperband(mf.Surrogate(), 450, seed=0)
    assert trace.spent == 450  # 4 brackets x ~108-126 epochs (r_l 27, eta 3)


def test_table_has_a_row_per_method_and_the_target() -> None:
    runs = [mf.run_seed("surrogate", s) for s in (0, 1)]
    text = mf.table("surrogate", runs, target=0.5)
    assert "target accuracy 0.5000" in text
    for method in mf.METHODS:
        assert f"| {method} |" in text
    assert "2/2" in text  # every method reaches 0.5 on both seeds
