"""A run as a Python object: load it, act with its policy, export it, evaluate it by command."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import empo.cli.evaluate as eval_cli
import empo.cli.export as export_cli
import empo.cli.train as train_cli
from empo import pipeline
from empo.errors import EmpoError
from empo.runs import load_run
from tests.test_loop_support import synthetic_transitions


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "mopo-smoke"
    data = synthetic_transitions(n=600)
    with pytest.MonkeyPatch.context() as patch:  # empo-train reads the synthetic data, not a dataset on disk
        patch.setattr(pipeline, "prepare_dataset", lambda *args, **kwargs: data)
        code = train_cli.main(["--task", "hopper-medium", "--algo", "mopo", "--preset", "smoke", "--no-progress", "--run-dir", str(run_dir)])
    assert code == 0
    return run_dir


def test_load_run_gives_the_config_summary_progress_and_the_trained_policy(smoke_run):
    run = load_run(smoke_run)
    assert run.config.task == "hopper-medium" and run.config.algo == "mopo" and run.epoch == 4
    assert run.summary["status"] == "finished" and len(run.progress) == 4
    state = torch.load(smoke_run / "checkpoint.pt", weights_only=False)["agent"]["actor"]
    obs = torch.randn(100, 11)
    mean = torch.nn.functional.linear(
        torch.relu(torch.nn.functional.linear(torch.relu(torch.nn.functional.linear(obs, state["trunk.0.weight"], state["trunk.0.bias"])),
                                              state["trunk.2.weight"], state["trunk.2.bias"])),
        state["head.weight"], state["head.bias"],
    )[:, :3]
    assert torch.allclose(run.policy(obs), torch.tanh(mean), atol=1e-6)
    single = run.act(obs[0].numpy())
    assert single.shape == (3,) and np.allclose(single, torch.tanh(mean[0]).numpy(), atol=1e-6)


@pytest.mark.parametrize("fmt", ["torch-export", "torchscript"])
def test_exported_policy_acts_the_same_in_a_process_without_empo(smoke_run, tmp_path, capsys, fmt):
    out = tmp_path / "policy.file"
    assert export_cli.main([str(smoke_run), "--out", str(out), "--format", fmt]) == 0
    assert "wrote" in capsys.readouterr().out
    obs = np.random.default_rng(0).normal(size=(100, 11)).astype(np.float32)
    np.save(tmp_path / "obs.npy", obs)
    script = (
        "import sys, numpy as np, torch\n"
        "policy = torch.export.load(sys.argv[1]).module() if sys.argv[4] == 'torch-export' else torch.jit.load(sys.argv[1])\n"
        "np.save(sys.argv[3], policy(torch.as_tensor(np.load(sys.argv[2]))).detach().numpy())\n"
        "assert not any(name == 'empo' or name.startswith('empo.') for name in sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(out), str(tmp_path / "obs.npy"), str(tmp_path / "act.npy"), fmt], check=True, cwd=tmp_path)
    expected = load_run(smoke_run).act(obs)
    assert np.allclose(np.load(tmp_path / "act.npy"), expected, atol=1e-6)


def test_empo_eval_on_a_run_and_on_an_exported_file(smoke_run, tmp_path, capsys):
    assert eval_cli.main([str(smoke_run), "--episodes", "2", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["task"] == "hopper-medium" and figures["episodes"] == 2 and figures["mean_length"] > 0
    export_cli.main([str(smoke_run), "--out", str(tmp_path / "p.pt")])
    capsys.readouterr()
    assert (smoke_run / "policy.pt2").exists() is False  # --out was given
    assert eval_cli.main([str(tmp_path / "p.pt"), "--task", "hopper-medium", "--episodes", "2", "--json"]) == 0
    from_file = json.loads(capsys.readouterr().out)
    assert from_file["mean_return"] == pytest.approx(figures["mean_return"], rel=1e-5)
    # one-line errors
    assert eval_cli.main([str(tmp_path / "p.pt"), "--episodes", "2"]) == 2
    assert "--task" in capsys.readouterr().err
    assert eval_cli.main([str(tmp_path / "p.pt"), "--task", "halfcheetah-medium"]) == 2
    assert "observations of size 17" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"junk")
    assert eval_cli.main([str(tmp_path / "junk.pt"), "--task", "hopper-medium"]) == 2
    assert "not a policy file" in capsys.readouterr().err
    assert export_cli.main([str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_load_run_errors_name_the_file(tmp_path):
    with pytest.raises(EmpoError, match="no such run folder"):
        load_run(tmp_path / "missing")
    (tmp_path / "config.yaml").write_text("task: hopper-medium\n")
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(EmpoError, match="checkpoint.pt: cannot read"):
        load_run(tmp_path)


def _one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_onnx_export_acts_the_same_in_onnxruntime_without_empo_or_torch(smoke_run, tmp_path, capsys):
    from empo.runs import EXPORT_FORMATS

    assert export_cli.EXPORT_FORMATS == EXPORT_FORMATS  # the command's copy, kept so that --help needs no torch
    assert export_cli.main([str(smoke_run), "--format", "onnx"]) == 0
    out = smoke_run / "policy.onnx"  # the default name for --format onnx
    assert f"wrote {out}" in capsys.readouterr().out and out.is_file()
    obs = np.random.default_rng(1).normal(size=(100, 11)).astype(np.float32)
    np.save(tmp_path / "obs.npy", obs)
    script = (
        "import sys, numpy as np, onnxruntime\n"
        "session = onnxruntime.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])\n"
        "obs = np.load(sys.argv[2])\n"
        "np.save(sys.argv[3], session.run(None, {'obs': obs})[0])\n"
        "np.save(sys.argv[4], session.run(['action'], {'obs': obs[:1]})[0])\n"  # any batch size
        "assert not any(name.split('.')[0] in ('empo', 'torch') for name in sys.modules), 'imported empo or torch'\n"
    )
    files = [tmp_path / name for name in ("act.npy", "one.npy")]
    subprocess.run([sys.executable, "-c", script, str(out), str(tmp_path / "obs.npy"), *map(str, files)], check=True, cwd=tmp_path)
    expected = load_run(smoke_run).act(obs)
    actions, first = (np.load(f) for f in files)
    assert actions.shape == (100, 3) and first.shape == (1, 3)
    assert np.abs(actions).max() > 1e-3  # a policy that acts, not zeros
    assert np.allclose(actions, expected, atol=1e-5) and np.allclose(first[0], expected[0], atol=1e-5)
    out.unlink()  # the module's other tests expect the run folder as training left it


def test_empo_eval_on_an_onnx_file(smoke_run, tmp_path, capsys):
    onnx_file = tmp_path / "hopper.onnx"
    assert export_cli.main([str(smoke_run), "--format", "onnx", "--out", str(onnx_file)]) == 0
    capsys.readouterr()
    assert eval_cli.main([str(smoke_run), "--episodes", "2", "--json"]) == 0
    from_run = json.loads(capsys.readouterr().out)
    assert eval_cli.main([str(onnx_file), "--task", "hopper-medium", "--episodes", "2", "--json"]) == 0
    from_onnx = json.loads(capsys.readouterr().out)
    assert from_onnx["policy"] == str(onnx_file) and from_onnx["mean_length"] == from_run["mean_length"]
    assert from_onnx["mean_return"] == pytest.approx(from_run["mean_return"], rel=1e-4)
    assert eval_cli.main([str(onnx_file), "--task", "halfcheetah-medium"]) == 2
    assert "observations of size 17" in _one_line_error(capsys.readouterr().err)
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    assert eval_cli.main([str(tmp_path / "junk.onnx"), "--task", "hopper-medium"]) == 2
    assert "not an ONNX policy file" in _one_line_error(capsys.readouterr().err)


def test_onnx_without_onnxruntime_says_what_to_install(smoke_run, tmp_path, capsys, monkeypatch):
    onnx_file = tmp_path / "p.onnx"
    assert export_cli.main([str(smoke_run), "--format", "onnx", "--out", str(onnx_file)]) == 0
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    assert export_cli.main([str(smoke_run), "--format", "onnx", "--out", str(tmp_path / "q.onnx")]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "needs onnxruntime: pip install onnxruntime" in line and not (tmp_path / "q.onnx").exists()
    assert eval_cli.main([str(onnx_file), "--task", "hopper-medium", "--episodes", "1"]) == 2
    assert "needs onnxruntime: pip install onnxruntime" in _one_line_error(capsys.readouterr().err)


def test_video_without_rendering_or_moviepy_fails_in_one_line_before_any_episode(smoke_run, tmp_path, capsys, monkeypatch):
    import empo.evaluation.policy_eval as policy_eval

    def no_episodes(*args, **kwargs):
        raise AssertionError("episodes ran before the video check")

    monkeypatch.setattr(policy_eval, "evaluate_policy", no_episodes)
    videos = tmp_path / "videos"
    monkeypatch.setenv("MUJOCO_GL", "nonsense")  # no backend of that name: the render check fails
    assert eval_cli.main([str(smoke_run), "--episodes", "1", "--video", str(videos)]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "cannot render offscreen" in line and "MUJOCO_GL='nonsense'" in line
    assert "MUJOCO_GL=egl" in line and "MUJOCO_GL=osmesa" in line and "libosmesa6" in line
    # a backend whose OpenGL start fails, as where EGL or OSMesa is missing: the child's error, in one line
    monkeypatch.setattr(policy_eval, "_RENDER_PROBE", "print('FAIL RuntimeError: no EGL display'); raise SystemExit(1)")
    monkeypatch.setenv("MUJOCO_GL", "egl")
    assert eval_cli.main([str(smoke_run), "--episodes", "1", "--video", str(videos)]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "MUJOCO_GL=egl" in line and "RuntimeError: no EGL display" in line and "libosmesa6" in line
    monkeypatch.setitem(sys.modules, "moviepy", None)
    assert eval_cli.main([str(smoke_run), "--episodes", "1", "--video", str(videos)]) == 2
    assert "pip install moviepy" in _one_line_error(capsys.readouterr().err)
    assert not videos.exists()


def _video_frames(path):
    import imageio.v2 as imageio

    reader = imageio.get_reader(str(path), "ffmpeg")
    try:
        return [frame for frame in reader]
    finally:
        reader.close()


def test_video_records_the_first_episode_and_leaves_the_figures_alone(smoke_run, tmp_path, capsys, monkeypatch):
    """RecordVideo and moviepy for real; the MuJoCo frames are faked so that no OpenGL is needed."""
    import gymnasium.envs.mujoco.mujoco_env as mujoco_env

    import empo.evaluation.policy_eval as policy_eval
    from empo.data.tasks import get_task

    renders = []

    def fake_render(env):
        assert env.render_mode == "rgb_array"
        renders.append(1)
        return np.full((64, 64, 3), 40 + 3 * (len(renders) % 50), dtype=np.uint8)

    monkeypatch.setattr(policy_eval, "offscreen_render_problem", lambda gym_id: None)
    monkeypatch.setattr(mujoco_env.MujocoEnv, "render", fake_render)
    assert eval_cli.main([str(smoke_run), "--episodes", "2", "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert not renders
    videos = tmp_path / "videos"
    assert eval_cli.main([str(smoke_run), "--episodes", "2", "--seed", "3", "--json", "--video", str(videos)]) == 0
    with_video = json.loads(capsys.readouterr().out)
    assert with_video["video"] == str(videos / "hopper-medium-seed3-episode-0.mp4")
    assert sorted(p.name for p in videos.iterdir()) == ["hopper-medium-seed3-episode-0.mp4"]
    length = policy_eval.evaluate_policy(load_run(smoke_run).policy, get_task("hopper-medium"), 1, seed=3).lengths[0]
    assert len(renders) == length + 1  # the reset frame and one per step, of episode 0 only
    assert len(_video_frames(with_video["video"])) == length + 1
    renders.clear()
    assert eval_cli.main([str(smoke_run), "--episodes", "2", "--json", "--video", str(videos)]) == 0
    assert {k: v for k, v in json.loads(capsys.readouterr().out).items() if k != "video"} == plain
    assert (videos / "hopper-medium-seed0-episode-0.mp4").is_file()
    assert eval_cli.main([str(smoke_run), "--episodes", "1", "--video", str(videos)]) == 0
    assert "video of episode 0" in capsys.readouterr().out


def _working_gl_backend():
    """The MUJOCO_GL value that renders offscreen on this machine, or a reason why none does."""
    from empo.evaluation.policy_eval import offscreen_render_problem

    problems = []
    for backend in ("egl", "osmesa"):
        os.environ["MUJOCO_GL"] = backend  # restored by the test's monkeypatch
        problem = offscreen_render_problem("Hopper-v5")
        if problem is None:
            return backend, None
        problems.append(problem)
    return None, "; ".join(problems)


def test_video_with_real_offscreen_rendering(smoke_run, tmp_path, monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "egl")
    backend, why = _working_gl_backend()
    if backend is None:  # only where neither libEGL nor libOSMesa can give an OpenGL context
        pytest.skip(f"no offscreen OpenGL on this machine: {why}")
    videos = tmp_path / "videos"
    # a child process: the OpenGL platform stays loaded for the life of a process
    done = subprocess.run(
        [sys.executable, "-m", "empo.cli.evaluate", str(smoke_run), "--episodes", "1", "--json", "--video", str(videos)],
        capture_output=True, text=True, env={**os.environ, "MUJOCO_GL": backend}, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    figures = json.loads(done.stdout)
    frames = _video_frames(figures["video"])
    assert len(frames) == round(figures["mean_length"]) + 1 and frames[0].ndim == 3
    assert float(np.std(frames[0])) > 1.0  # a rendered scene, not a blank frame
