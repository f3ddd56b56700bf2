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

from edgegen.denoiser import Denoiser  # noqa: E402
from edgegen.samplers import SamplingPlan, ancestral_step, lcm_boundary_scalings, sample_euler_ancestral  # noqa: E402
from edgegen.schedules import NoiseSchedule  # noqa: E402
from edgegen.errors import ScheduleError  # noqa: E402

SHAPE = (2, 3, 8, 8)


def analytic_model(x, t, alphas_cumprod, prediction_type="epsilon", dtype=np.float32):
    """A smooth stand-in for a network: the ideal denoiser for N(0, I) data plus a wobble.

    It depends on the sample and the (possibly fractional) timestep, and keeps samples O(1)
    so an absolute tolerance is meaningful.
    """
    a = np.float32(np.interp(t, np.arange(len(alphas_cumprod)), alphas_cumprod))
    ideal = {"epsilon": (1 - a) ** 0.5 * x, "v_prediction": 0 * x, "sample": a**0.5 * x}[prediction_type]
    wobble = np.float32(0.1) * a**0.5 * np.sin(np.float32(3e-3) * np.float32(t) + x)
    return (ideal + wobble).astype(dtype)


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


def analytic_network(schedule):
    """The analytic model as an engine-like ``network(feeds)``, for a :class:`Denoiser`."""
    return lambda feeds: analytic_model(feeds["sample"], float(feeds["timestep"][0]), schedule.alphas_cumprod,
                                        schedule.prediction_type)


def run_edgegen(name, config, steps, latents, seed, eta, sigmas=None):
    schedule = NoiseSchedule.from_config({"num_train_timesteps": 1000, **config})
    plan = SamplingPlan.build(schedule, name, steps, sigmas=sigmas)
    gen = torch.Generator().manual_seed(seed)

    def noise(shape):
        return torch.randn(shape, generator=gen, dtype=torch.float32).numpy()

    # The timestep dtype diffusers feeds: int64 for ddpm / ddim / dpmpp-2m, float32 for Euler.
    denoise = plan.denoiser(analytic_network(schedule), schedule, plan.timesteps.dtype)
    return plan.run(denoise, latents, eta=eta, noise=noise), plan


@pytest.mark.parametrize("name", list(SCHEDULERS))
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(str(v) for v in c.values()))
@pytest.mark.parametrize("steps", [10, 25])
def test_sampler_matches_diffusers(name, config, steps):
    if name.startswith("euler") and config.get("prediction_type") == "sample":
        pytest.skip("diffusers' Euler schedulers do not implement prediction_type='sample' consistently")
    latents = np.random.default_rng(1).standard_normal(SHAPE, dtype=np.float32)
    eta = 0.6 if name == "ddim" else None
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


def ddim_vp_reference(model, x, a_t, a_prev, eta, noise):
    """DDIM as written in Song et al. 2021, eq. 12 (VP space, epsilon prediction), for the proof below."""
    for i in range(len(a_t)):
        a, ap = np.float64(a_t[i]), np.float64(a_prev[i])
        eps = model(x, i).astype(np.float64)
        x0 = (x - (1 - a) ** 0.5 * eps) / a**0.5
        std = eta * ((1 - ap) / (1 - a)) ** 0.5 * (1 - a / ap) ** 0.5
        x = ap**0.5 * x0 + (1 - ap - std**2) ** 0.5 * eps
        if std > 0:
            x = x + std * noise(x.shape)
    return x


def test_ddim_is_euler_ancestral_in_sigma_space():
    """DDIM(eta) (eq. 12, VP space) equals Euler-ancestral(eta) on sigma = sqrt((1 - a) / a), started
    from x_T * sqrt(1 + sigma_0**2): the one core serves both samplers."""
    schedule = NoiseSchedule.from_config({"beta_schedule": "scaled_linear", "beta_start": 0.00085,
                                          "beta_end": 0.012, "timestep_spacing": "trailing"})
    timesteps = schedule.timesteps(20)
    a_t = schedule.alphas_cumprod[timesteps]
    a_prev = np.append(a_t[1:], np.float32(1.0))
    sigmas = np.append(((1 - a_t) / a_t) ** 0.5, 0.0).astype(np.float32)
    latents = np.random.default_rng(0).standard_normal(SHAPE, dtype=np.float32)
    denoise = Denoiser(analytic_network(schedule), schedule, sigmas=sigmas[:-1], timesteps=timesteps)
    for eta in (0.0, 0.5, 1.0):
        draws = [np.random.default_rng(i).standard_normal(SHAPE, dtype=np.float32) for i in range(40)]

        def source():
            it = iter(draws)
            return lambda shape: next(it)

        model = lambda x, i: analytic_model(x.astype(np.float32), float(timesteps[i]), schedule.alphas_cumprod)  # noqa: E731
        x_ddim = ddim_vp_reference(model, latents.astype(np.float64), a_t, a_prev, eta, source())
        x_sigma = latents * np.float32((1 + sigmas[0] ** 2) ** 0.5)
        x_euler = sample_euler_ancestral(denoise, x_sigma, sigmas, eta=eta, noise=source())
        np.testing.assert_allclose(x_euler, x_ddim, atol=2e-5)


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
    from edgegen.guidance import CFGDenoiser

    schedule = NoiseSchedule.from_config({})
    sigmas = np.array([10.0, 3.0, 1.0, 0.5, 0.0])
    denoiser = Denoiser(analytic_network(schedule), schedule, sigmas=sigmas, timesteps=np.arange(5))
    cond, uncond = {"class_labels": np.zeros(1, np.int64)}, {"class_labels": np.ones(1, np.int64)}

    def guided(scale_uncond, interval):
        cfg = CFGDenoiser(denoiser, cond, uncond if scale_uncond else None, 3.0, interval=interval)
        return [cfg.guides(s) for s in sigmas]

    assert all(guided(True, None))
    assert guided(True, (0.4, 3.0)) == [False, True, True, True, False]
    assert not any(guided(False, (0.0, 100.0)))  # no unconditional branch: no guidance anywhere
    with pytest.raises(ValueError, match=r"0 <= lo < hi, got \(2.0, 1.0\)"):
        guided(True, (2.0, 1.0))



# DPM-Solver++ 2M and the Karras / exponential sigma schedules (issue 13 item 1). Latent diffusion's
# betas (sigma_max 14.6); the linear schedule (sigma_max 157) is at float32's limit, tested below.
SD_BETAS = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
SIGMA_CONFIGS = [
    dict(**SD_BETAS, timestep_spacing="leading", steps_offset=1),  # Stable Diffusion's scheduler config
    dict(**SD_BETAS, timestep_spacing="linspace"),  # DPMSolverMultistepScheduler's default spacing
    dict(**SD_BETAS, timestep_spacing="trailing", final_sigmas_type="sigma_min"),
    dict(**SD_BETAS, timestep_spacing="leading", final_sigmas_type="sigma_min", euler_at_final=True),
    dict(**SD_BETAS, timestep_spacing="trailing", final_sigmas_type="sigma_min", lower_order_final=False),
]
KIND_KEYS = {"discrete": {}, "karras": {"use_karras_sigmas": True}, "exponential": {"use_exponential_sigmas": True}}


def diffusers_euler_a_with(sched_config, kind, steps):
    """EulerAncestralDiscreteScheduler has no Karras / exponential option: give it the sigmas and
    timesteps EulerDiscreteScheduler computes for them (the k-diffusion way of combining them)."""
    euler = diffusers.EulerDiscreteScheduler(num_train_timesteps=1000, **sched_config, **KIND_KEYS[kind])
    euler.set_timesteps(steps)
    sched = diffusers.EulerAncestralDiscreteScheduler(
        num_train_timesteps=1000, **{k: v for k, v in sched_config.items() if k != "final_sigmas_type"})
    sched.set_timesteps(steps)
    sched.sigmas, sched.timesteps = euler.sigmas.clone(), euler.timesteps.clone()
    return sched


def run_diffusers_sigmas(name, config, kind, steps, latents, seed):
    cls = {"dpmpp-2m": diffusers.DPMSolverMultistepScheduler, "euler": diffusers.EulerDiscreteScheduler}.get(name)
    keys = set(inspect.signature((cls or diffusers.EulerDiscreteScheduler).__init__).parameters)
    sched_config = {k: v for k, v in config.items() if k in keys}
    if cls is None:
        sched = diffusers_euler_a_with(sched_config, kind, steps)
    else:
        sched = cls(num_train_timesteps=1000, **sched_config, **KIND_KEYS[kind])
        sched.set_timesteps(steps)
    acp, pred = sched.alphas_cumprod.numpy(), config.get("prediction_type", "epsilon")
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(latents) * sched.init_noise_sigma
    for t in sched.timesteps:
        inp = sched.scale_model_input(x, t)
        out = torch.from_numpy(analytic_model(inp.numpy(), float(t), acp, pred))
        x = sched.step(out, t, x, generator=gen).prev_sample
    return x.numpy(), sched


@pytest.mark.parametrize("name", ["dpmpp-2m", "euler", "euler-a"])
@pytest.mark.parametrize("kind", ["discrete", "karras", "exponential"])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("steps", [1, 4, 8, 20, 25])
@pytest.mark.parametrize("config", SIGMA_CONFIGS, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_sigma_schedules_match_diffusers(name, kind, prediction_type, steps, config):
    if name != "dpmpp-2m" and config.get("final_sigmas_type") == "sigma_min" and config is not SIGMA_CONFIGS[2]:
        pytest.skip("DPM-only options; one sigma_min config covers Euler")
    if name == "euler-a" and config.get("final_sigmas_type") == "sigma_min":
        pytest.skip("EulerAncestralDiscreteScheduler always ends at sigma 0")
    config = {**config, "prediction_type": prediction_type}
    latents = np.random.default_rng(2).standard_normal(SHAPE, dtype=np.float32)
    ref, sched = run_diffusers_sigmas(name, config, kind, steps, latents, seed=5)
    got, plan = run_edgegen(name, config, steps, latents, seed=5, eta=None, sigmas=kind)
    # Integer timesteps exactly (diffusers rounds or truncates them); fractional ones to float32
    # rounding (torch and numpy compute the training sigmas 1 ulp apart).
    np.testing.assert_allclose(plan.timesteps, sched.timesteps.numpy(), rtol=1e-6 if name != "dpmpp-2m" else 0)
    np.testing.assert_allclose(plan.sigmas, sched.sigmas.numpy(), rtol=1e-6)
    assert np.abs(ref).max() < 10, "the analytic model should keep samples O(1)"
    assert np.abs(got - ref).max() <= 1e-5, f"max abs diff {np.abs(got - ref).max()}"


@pytest.mark.parametrize("kind", ["karras", "exponential"])
def test_config_chooses_the_sigma_schedule(kind):
    """``use_karras_sigmas`` / ``use_exponential_sigmas`` in the config choose the schedule when the
    call names none; ddim keeps its discrete sigmas, and asking it for others is refused."""
    schedule = NoiseSchedule.from_config({"beta_schedule": "scaled_linear", "beta_start": 0.00085,
                                          "beta_end": 0.012, **KIND_KEYS[kind]})
    assert SamplingPlan.build(schedule, "dpmpp-2m", 10).sigma_schedule.value == kind
    assert SamplingPlan.build(schedule, "euler", 10).sigma_schedule.value == kind
    assert SamplingPlan.build(schedule, "dpmpp-2m", 10, sigmas="discrete").sigma_schedule.value == "discrete"
    assert SamplingPlan.build(schedule, "ddim", 10).sigma_schedule.value == "discrete"
    with pytest.raises(ScheduleError, match=f"sigmas: ddim runs on the discrete .* got '{kind}'"):
        SamplingPlan.build(schedule, "ddim", 10, sigmas=kind)
    with pytest.raises(ScheduleError, match="sigmas: expected one of discrete, karras, exponential, got 'beta'"):
        SamplingPlan.build(schedule, "euler", 10, sigmas="beta")


@pytest.mark.parametrize("kind", ["discrete", "karras"])
@pytest.mark.parametrize("steps", [1, 4, 20])
def test_dpmpp_at_sigma_157_is_as_accurate_as_diffusers(kind, steps):
    """With the linear betas (sigma_max 157) float32 pins the first x0 estimate to ~1e-5 in any
    implementation: x0 = (x_t - sigma_t * eps) / alpha_t amplifies rounding by 1 / alpha_t = 157.
    Measured 2026-11-23: diffusers itself is 3.0e-5 from a float64 run at 1 step, edgegen 4.2e-5.
    So here both are held to the float64 run of diffusers' algorithm instead of to each other."""
    config = dict(beta_schedule="linear", timestep_spacing="linspace", prediction_type="epsilon")
    latents = np.random.default_rng(2).standard_normal(SHAPE, dtype=np.float32)
    ref, _ = run_diffusers_sigmas("dpmpp-2m", config, kind, steps, latents, seed=5)
    got, _ = run_edgegen("dpmpp-2m", config, steps, latents, seed=5, eta=None, sigmas=kind)
    sched = diffusers.DPMSolverMultistepScheduler(num_train_timesteps=1000, **config, **KIND_KEYS[kind])
    sched.set_timesteps(steps)
    acp, x = sched.alphas_cumprod.numpy().astype(np.float64), torch.from_numpy(latents.astype(np.float64))
    for t in sched.timesteps:
        x = sched.step(torch.from_numpy(analytic_model(x.numpy(), float(t), acp, dtype=np.float64)), t, x).prev_sample
    truth = x.numpy()
    ours, theirs = np.abs(got - truth).max(), np.abs(ref - truth).max()
    assert ours <= max(2 * theirs, 1e-5), (ours, theirs)


@pytest.mark.parametrize("config,match", [
    ({"beta_end": 2.0}, r"betas: expected finite values in \(0, 1\), got .* \(from \{'beta_end': 2.0\}\)"),
    ({"beta_start": float("nan")}, r"betas: expected finite values in \(0, 1\), got nan at step 0"),
    ({"beta_start": 0.0}, r"betas: expected finite values in \(0, 1\), got 0.0 at step 0"),
    ({"trained_betas": [0.1, 1.5, 0.2]}, r"got 1.5 at step 1 \(from trained_betas\)"),
    ({"trained_betas": [0.1, float("inf")]}, r"got inf at step 1"),
    ({"beta_end": "high"}, "expected numeric beta_start / beta_end"),
    ({"num_train_timesteps": 1}, "num_train_timesteps: expected >= 2"),
    ({"clip_sample": True, "clip_sample_range": float("nan")}, "clip_sample_range: expected a finite value > 0"),
    ({"use_karras_sigmas": True, "use_exponential_sigmas": True}, "expected at most one true"),
    ({"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "sde-dpmsolver++"},
     "algorithm_type: edgegen implements DPM-Solver\\+\\+ 2M only"),
    ({"final_sigmas_type": "max"}, "final_sigmas_type: expected one of zero, sigma_min, got 'max'"),
])
def test_schedule_config_is_validated(config, match):
    with pytest.raises(ScheduleError, match=match):
        NoiseSchedule.from_config(config)


def test_denoiser_timestep_lookup_and_parametrizations():
    """The run's table first (exact sigma), else log-sigma interpolation; integer engines get rounded
    timesteps. Every prediction type gives x == x0 + sigma * eps."""
    schedule = NoiseSchedule.from_config({})
    table = dict(sigmas=np.array([2.0], np.float32), timesteps=np.array([123.4], np.float32))
    as_float = Denoiser(analytic_network(schedule), schedule, timestep_dtype=np.float32, **table)
    as_int = Denoiser(analytic_network(schedule), schedule, timestep_dtype=np.int64, **table)
    assert as_float.timestep(2.0) == np.float32(123.4) and as_int.timestep(2.0) == 123
    assert as_int.timestep(schedule.train_sigmas[500]) == 500
    assert float(as_float.timestep(schedule.train_sigmas[500])) == pytest.approx(500, abs=1e-3)
    x = np.random.default_rng(0).standard_normal(SHAPE, dtype=np.float32) * 3
    for prediction_type in ("epsilon", "v_prediction", "sample"):
        schedule = NoiseSchedule.from_config({"prediction_type": prediction_type})
        d = Denoiser(analytic_network(schedule), schedule, **table)(x, np.float32(2.0))
        np.testing.assert_allclose(d.x0 + 2.0 * d.eps, x, atol=1e-5)


LCM_CONFIGS = [
    dict(**SD_BETAS, timestep_spacing="leading", steps_offset=1),  # LCM_Dreamshaper_v7's scheduler config
    dict(**SD_BETAS, original_inference_steps=25, timestep_scaling=5.0, set_alpha_to_one=False),
    dict(beta_schedule="linear", clip_sample=True, clip_sample_range=1.5),
]


def run_diffusers_lcm(config, steps, latents, seed):
    keys = set(inspect.signature(diffusers.LCMScheduler.__init__).parameters)
    sched = diffusers.LCMScheduler(num_train_timesteps=1000, **{k: v for k, v in config.items() if k in keys})
    sched.set_timesteps(steps)
    acp, pred = sched.alphas_cumprod.numpy(), config.get("prediction_type", "epsilon")
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(latents) * sched.init_noise_sigma
    for t in sched.timesteps:
        out = torch.from_numpy(analytic_model(sched.scale_model_input(x, t).numpy(), float(t), acp, pred))
        x, denoised = sched.step(out, t, x, generator=gen, return_dict=False)
    return denoised.numpy(), sched


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("steps", [1, 2, 4, 8])
@pytest.mark.parametrize("config", LCM_CONFIGS, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_lcm_matches_diffusers(config, steps, prediction_type):
    """LCMScheduler.step given the same model outputs and noise: grid timesteps exactly, the
    boundary scalings, re-noising with fresh noise and the noiseless last step, to 1e-5."""
    config = {**config, "prediction_type": prediction_type}
    latents = np.random.default_rng(3).standard_normal(SHAPE, dtype=np.float32)
    ref, sched = run_diffusers_lcm(config, steps, latents, seed=11)
    got, plan = run_edgegen("lcm", {**config, "_class_name": "LCMScheduler"}, steps, latents, seed=11, eta=None)
    np.testing.assert_array_equal(plan.timesteps, sched.timesteps.numpy())
    c_skip, c_out = zip(*(sched.get_scalings_for_boundary_condition_discrete(t) for t in sched.timesteps))
    ours = lcm_boundary_scalings(plan.timesteps, plan.timestep_scaling)
    np.testing.assert_allclose(ours[0], torch.stack(c_skip).numpy(), rtol=1e-6)
    np.testing.assert_allclose(ours[1], torch.stack(c_out).numpy(), rtol=1e-6)
    assert np.abs(ref).max() < 10, "the analytic model should keep samples O(1)"
    assert np.abs(got - ref).max() <= 1e-5, f"max abs diff {np.abs(got - ref).max()}"


def test_lcm_callback_sees_the_consistency_estimate_and_can_stop():
    """Stopping after step k leaves the k-th consistency output as the x0 the callback saw (what the
    pipeline decodes); the last step adds no noise (one noise draw fewer than steps)."""
    schedule = NoiseSchedule.from_config({"_class_name": "LCMScheduler", **SD_BETAS})
    plan = SamplingPlan.build(schedule, "lcm", 4)
    denoise = plan.denoiser(analytic_network(schedule), schedule)
    draws, seen = [], []
    rng = np.random.default_rng(0)

    def noise(shape):
        draws.append(shape)
        return rng.standard_normal(shape, dtype=np.float32)

    latents = np.random.default_rng(1).standard_normal(SHAPE, dtype=np.float32)
    out = plan.run(denoise, latents, noise=noise, callback=lambda i, s, x0: seen.append(x0.copy()))
    assert len(draws) == 3 and len(seen) == 4 and np.array_equal(out, seen[-1])
    assert plan.default_eta() == 1.0 and plan.init_noise_sigma == 1.0
    with pytest.raises(ValueError, match="eta"):
        plan.run(denoise, latents, eta=0.0, noise=noise)
    with pytest.raises(ValueError, match="noise source"):
        plan.run(denoise, latents, noise=None)


@pytest.mark.parametrize("config, steps, match", [
    ({}, 51, "LCM takes 1..50 steps"),
    ({"original_inference_steps": 2000}, 4, "original_inference_steps: expected an integer in 1..1000"),
    ({"original_inference_steps": 4.0}, 4, "original_inference_steps"),
    ({"timestep_scaling": 0}, 4, "timestep_scaling: expected a finite number > 0"),
    ({"thresholding": True}, 4, "thresholding=true is not supported"),
])
def test_lcm_options_are_validated(config, steps, match):
    with pytest.raises(ScheduleError, match=match):
        SamplingPlan.build(NoiseSchedule.from_config({"_class_name": "LCMScheduler", **config}), "lcm", steps)
    with pytest.raises(ScheduleError, match="sigmas: lcm runs on the discrete"):
        SamplingPlan.build(NoiseSchedule.from_config({}), "lcm", 4, sigmas="karras")
