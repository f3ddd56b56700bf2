"""Samplers against diffusers' schedulers, given the same model outputs and the same noise.

The model is an analytic function of (x_t, timestep), so any mismatch in timesteps, input
scaling or step maths shows up. Noise for both sides comes from one seeded torch generator,
drawn in the order diffusers draws it. Tolerance: max abs difference <= 1e-5.
"""

import inspect

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from edgegen.samplers import SamplingPlan, ancestral_step, sample_ddim, sample_euler_ancestral  # noqa: E402
from edgegen.schedules import NoiseSchedule  # noqa: E402
from edgegen.errors import ScheduleError  # noqa: E402

SHAPE = (2, 3, 8, 8)


def analytic_model(x, t, alphas_cumprod, prediction_type="epsilon"):
    """A smooth stand-in for a network: the ideal denoiser for N(0, I) data plus a wobble.

    It depends on the sample and the (possibly fractional) timestep, and keeps samples O(1)
    so an absolute tolerance is meaningful.
    """
    a = np.float32(np.interp(t, np.arange(len(alphas_cumprod)), alphas_cumprod))
    ideal = {"epsilon": (1 - a) ** 0.5 * x, "v_prediction": 0 * x, "sample": a**0.5 * x}[prediction_type]
    wobble = np.float32(0.1) * a**0.5 * np.sin(np.float32(3e-3) * np.float32(t) + x)
    return (ideal + wobble).astype(np.float32)


CONFIGS = [
    dict(beta_schedule="linear", timestep_spacing="leading", steps_offset=0),
    dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, timestep_spacing="leading",
         steps_offset=1, set_alpha_to_one=False),
    # squaredcos_cap_v2 reaches sigma ~2e4 at t=999, where Euler-a's float32 sigma_down is all
    # rounding error (in diffusers too); leading spacing stops at t=900, where it is well posed.
    dict(beta_schedule="squaredcos_cap_v2", timestep_spacing="leading", steps_offset=1),
    dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, timestep_spacing="trailing"),
    dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, timestep_spacing="linspace",
         prediction_type="v_prediction"),
    dict(beta_schedule="linear", timestep_spacing="leading", clip_sample=True, clip_sample_range=1.0),
    dict(beta_schedule="linear", timestep_spacing="trailing", prediction_type="sample", clip_sample=True,
         clip_sample_range=2.0, variance_type="fixed_large"),
]

SCHEDULERS = {
    "ddpm": "DDPMScheduler",
    "ddim": "DDIMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-a": "EulerAncestralDiscreteScheduler",
}


def run_diffusers(name, config, steps, latents, seed, eta):
    cls = getattr(diffusers, SCHEDULERS[name])
    keys = set(inspect.signature(cls.__init__).parameters)
    config = {"clip_sample": False, **config}
    sched = cls(num_train_timesteps=1000, **{k: v for k, v in config.items() if k in keys})
    sched.set_timesteps(steps)
    acp, pred = sched.alphas_cumprod.numpy(), config.get("prediction_type", "epsilon")
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(latents) * sched.init_noise_sigma
    kw = {"eta": eta} if name == "ddim" else {}
    for t in sched.timesteps:
        inp = sched.scale_model_input(x, t)
        out = torch.from_numpy(analytic_model(inp.numpy(), float(t), acp, pred))
        x = sched.step(out, t, x, generator=gen, **kw).prev_sample
    return x.numpy(), sched


def run_edgegen(name, config, steps, latents, seed, eta):
    schedule = NoiseSchedule.from_config({"num_train_timesteps": 1000, **config})
    plan = SamplingPlan.build(schedule, name, steps)
    gen = torch.Generator().manual_seed(seed)

    def noise(shape):
        return torch.randn(shape, generator=gen, dtype=torch.float32).numpy()

    def model(x_t, i):
        return analytic_model(x_t, float(plan.timesteps[i]), schedule.alphas_cumprod, schedule.prediction_type)

    return plan.run(model, latents, schedule, eta=eta, noise=noise), plan


@pytest.mark.parametrize("name", list(SCHEDULERS))
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(str(v) for v in c.values()))
@pytest.mark.parametrize("steps", [10, 25])
def test_sampler_matches_diffusers(name, config, steps):
    if name.startswith("euler") and config.get("prediction_type") == "sample":
        pytest.skip("diffusers' Euler schedulers do not implement prediction_type='sample' consistently")
    latents = np.random.default_rng(1).standard_normal(SHAPE, dtype=np.float32)
    eta = 0.6 if name == "ddim" else 0.0
    ref, sched = run_diffusers(name, config, steps, latents, seed=7, eta=eta)
    got, plan = run_edgegen(name, config, steps, latents, seed=7, eta=eta)
    np.testing.assert_allclose(plan.timesteps, sched.timesteps.numpy(), atol=0)
    assert plan.init_noise_sigma == pytest.approx(float(sched.init_noise_sigma), rel=1e-6)
    assert np.abs(ref).max() < 10, "the analytic model should keep samples O(1)"
    assert np.abs(got - ref).max() <= 1e-5, f"max abs diff {np.abs(got - ref).max()}"


def test_alphas_cumprod_match_diffusers():
    for config in CONFIGS:
        ref = diffusers.DDPMScheduler(**{k: v for k, v in config.items() if k not in ("set_alpha_to_one",)})
        got = NoiseSchedule.from_config(config).alphas_cumprod
        np.testing.assert_allclose(got, ref.alphas_cumprod.numpy(), rtol=1e-6)


def test_ddim_is_euler_ancestral_in_sigma_space():
    """DDIM(eta) on a chained schedule equals Euler-ancestral(eta) on the matching sigmas."""
    schedule = NoiseSchedule.from_config({"beta_schedule": "scaled_linear", "beta_start": 0.00085,
                                          "beta_end": 0.012, "timestep_spacing": "trailing"})
    timesteps = schedule.timesteps(20)
    a_t = schedule.alphas_cumprod[timesteps]
    a_prev = np.append(a_t[1:], np.float32(1.0))
    sigmas = np.append(((1 - a_t) / a_t) ** 0.5, 0.0).astype(np.float32)
    latents = np.random.default_rng(0).standard_normal(SHAPE, dtype=np.float32)
    for eta in (0.0, 0.5, 1.0):
        draws = [np.random.default_rng(i).standard_normal(SHAPE, dtype=np.float32) for i in range(40)]

        def source():
            it = iter(draws)
            return lambda shape: next(it)

        model = lambda x, i: analytic_model(x, float(timesteps[i]), schedule.alphas_cumprod)  # noqa: E731
        x_ddim = sample_ddim(model, latents, a_t, a_prev, eta=eta, noise=source())
        # Start both from the same x_t: in sigma space x = x_t * sqrt(1 + sigma^2).
        x_sigma = latents * np.float32((1 + sigmas[0] ** 2) ** 0.5)
        x_euler = sample_euler_ancestral(model, x_sigma, sigmas, eta=eta, noise=source())
        np.testing.assert_allclose(x_ddim, x_euler, atol=2e-5)


def test_ancestral_step_conserves_variance():
    down, up = ancestral_step(5.0, 2.0, 1.0)
    assert down**2 + up**2 == pytest.approx(4.0)
    assert ancestral_step(5.0, 2.0, 0.0) == (2.0, 0.0)
    assert ancestral_step(5.0, 0.0, 1.0) == (0.0, 0.0)


def test_schedule_rejects_unknown_options():
    with pytest.raises(ScheduleError, match="beta_schedule.*got 'cosine'"):
        NoiseSchedule.from_config({"beta_schedule": "cosine"})
    with pytest.raises(ScheduleError, match="thresholding"):
        NoiseSchedule.from_config({"thresholding": True})
    with pytest.raises(ScheduleError, match="sampler: expected"):
        SamplingPlan.build(NoiseSchedule.from_config({}), "heun", 10)
    with pytest.raises(ScheduleError, match="num_inference_steps"):
        NoiseSchedule.from_config({}).timesteps(0)


def test_guidance_interval_selects_steps_by_sigma():
    from edgegen.guidance import guidance_steps

    sigmas = np.array([10.0, 3.0, 1.0, 0.5, 0.0])
    assert guidance_steps(sigmas, 3.0, None).all()
    assert guidance_steps(sigmas, 3.0, (0.4, 3.0)).tolist() == [False, True, True, True, False]
    assert not guidance_steps(sigmas, 1.0, (0.0, 100.0)).any()  # scale 1: no guidance anywhere
    with pytest.raises(ValueError, match=r"0 <= lo < hi, got \(2.0, 1.0\)"):
        guidance_steps(sigmas, 3.0, (2.0, 1.0))
