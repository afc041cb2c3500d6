"""A strategy warns when its own schedule covers the whole run (issue 30): L-DAWA's FedAvg
warm-up, FedVSSL's SWA start. The warning is given exactly when no round of the run does
what the strategy's name says."""

import pytest

from fedsim.strategies.dp import wrap_dp
from fedsim.strategies.fedavg import FedAvg
from fedsim.strategies.fedvssl import FedVSSL
from fedsim.strategies.ldawa import LDAWA


@pytest.mark.parametrize("warmup", [0, 1, 3, 5])
@pytest.mark.parametrize("rounds", [1, 2, 3, 4, 6])
def test_ldawa_warns_exactly_when_every_aggregation_is_a_warm_up_one(warmup, rounds):
    ldawa = LDAWA(LDAWA.Params(warmup_rounds=warmup))

    warning = ldawa.schedule_warning(rounds)

    all_fedavg = all(ldawa.in_warmup(a) for a in range(1, rounds + 1))
    assert (warning is not None) == all_fedavg
    if warning:
        assert warning.startswith(f"ldawa: warm-up of {warmup} rounds covers all {rounds} rounds; "
                                  "this run is plain FedAvg")


@pytest.mark.parametrize("swa", [True, False])
@pytest.mark.parametrize("rounds", [1, 2, 5])
def test_fedvssl_warns_exactly_when_swa_is_on_but_never_applies(swa, rounds):
    fedvssl = FedVSSL(FedVSSL.Params(swa=swa))

    warning = fedvssl.schedule_warning(rounds)

    never = not any(fedvssl.swa_active(a) for a in range(1, rounds + 1))
    assert (warning is not None) == (swa and never)
    if warning:
        assert warning.startswith("fedvssl: SWA starts at the 2nd aggregation but this run has only 1 round")


def test_other_strategies_and_the_dp_wrapper():
    assert FedAvg().schedule_warning(1) is None
    wrapped = wrap_dp(LDAWA(), clip=1.0, noise_multiplier=0.0, seed=0)
    assert wrapped.schedule_warning(3) == LDAWA().schedule_warning(3) is not None
    assert wrapped.schedule_warning(4) is None
