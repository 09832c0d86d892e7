"""The yolact-fast command line."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import yolact_fast as yf
from yolact_fast.cli import main
from yolact_fast.data.synthetic import golden_image

from inputs import read_video, shape_frames, write_video


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, rule_model):
    path = tmp_path_factory.mktemp("weights") / "yolact_resnet50_54_800000.pth"
    torch.save(rule_model("yolact_resnet50", 1).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for seed, (h, w) in enumerate([(120, 160), (97, 131)]):
        path = folder / f"img{seed}.png"
        Image.fromarray(golden_image(seed, h, w).permute(1, 2, 0).numpy()).save(path)
        paths.append(path)
    return paths


def test_segment_writes_overlays_and_coco_json(checkpoint, images, tmp_path, rule_model):
    out = tmp_path / "out"
    code = main(
        ["segment", *map(str, images), "--weights", str(checkpoint), "--out", str(out), "--score-threshold", "0.2"]
    )
    assert code == 0
    for path in images:
        overlay = Image.open(out / (path.stem + ".png"))
        assert overlay.size == Image.open(path).size
    results = json.loads((out / "results.json").read_text())
    assert [im["file_name"] for im in results["images"]] == list(map(str, images))
    annotations = results["annotations"]
    expected = yf.segment(str(images[1]), model=rule_model("yolact_resnet50", 1), score_threshold=0.2)
    mine = [a for a in annotations if a["image_id"] == 1]
    assert len(mine) == len(expected) > 0
    assert all(a["score"] > 0.2 for a in annotations)
    assert [a["score"] for a in mine] == pytest.approx(expected.scores.tolist())


def test_segment_errors_are_reported(images, tmp_path, capsys):
    assert main(["segment", str(images[0]), "--weights", str(tmp_path / "nope.pth"), "--out", str(tmp_path)]) == 1
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["segment", "missing.png", "--weights", "x.pth", "--out", str(tmp_path)]) == 1
    assert "image file not found" in capsys.readouterr().err


def test_segment_unknown_config(checkpoint, images, tmp_path, capsys):
    assert (
        main(["segment", str(images[0]), "--weights", str(checkpoint), "--config", "nope", "--out", str(tmp_path)]) == 1
    )
    assert "unknown config 'nope'" in capsys.readouterr().err


def test_missing_arguments_exit_with_usage():
    with pytest.raises(SystemExit) as exit_info:
        main(["segment", "a.png"])
    assert exit_info.value.code == 2


def test_demo_uses_random_weights_and_writes_overlay(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--random-weights", "yolact_resnet50"]) == 0
    printed = capsys.readouterr().out
    assert "RANDOM weights" in printed and "not a trained model" in printed
    overlay = Image.open(tmp_path / "demo_random_weights.png")
    assert overlay.size == (640, 480)
    original = np.asarray(Image.open(tmp_path / "demo_input.png"))
    assert (np.asarray(overlay) != original).any()


def test_demo_keeps_the_users_seed(tmp_path):
    from yolact_fast.data import synthetic_shapes

    for options, name in (([], "demo_input.png"), (["--random-weights", "yolact_resnet50"], "demo_input.png")):
        assert main(["demo", "--out", str(tmp_path / "a"), "--seed", "7", *options]) == 0
        assert main(["demo", "--out", str(tmp_path / "b"), *options]) == 0
        seeded = np.asarray(Image.open(tmp_path / "a" / name))
        assert not np.array_equal(seeded, np.asarray(Image.open(tmp_path / "b" / name)))
        expected = synthetic_shapes(1, 7, (256, 256))[0][0] if not options else golden_image(7, 480, 640)
        assert np.array_equal(seeded, expected.permute(1, 2, 0).numpy())


def test_segment_refuses_oversized_images_and_goes_on(tmp_path, capsys):
    from inputs import png_claiming_size

    save_shape_image(tmp_path / "in" / "a.png", 1)
    png_claiming_size(tmp_path / "in" / "b.png", 20000, 20000)
    png_claiming_size(tmp_path / "in" / "c.png", 9000, 9000)
    assert main(["segment", str(tmp_path / "in"), "--out", str(tmp_path / "out")]) == 1  # 2 inputs not done
    captured = capsys.readouterr()
    assert "'unreadable images': 2" in captured.out
    assert "b.png' is too large" in captured.err and "MAX_IMAGE_PIXELS" in captured.err
    assert "2 input(s) could not be processed" in captured.err
    assert visible(tmp_path / "out") == ["a.png", "results.json"]


def test_segment_exits_nonzero_when_its_only_input_is_skipped(tmp_path, capsys):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    assert main(["segment", str(tmp_path / "broken.png"), "--out", str(tmp_path / "out")]) == 1
    assert "1 input(s) could not be processed" in capsys.readouterr().err
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == {"images": [], "annotations": []}


def visible(folder):
    """The names in ``folder`` but .parts (the records of complete inputs)."""
    return sorted(p.name for p in folder.iterdir() if p.name != ".parts")


def test_demo_segments_a_synthetic_image_with_the_trained_model(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "yolact_demo" in printed and "demo.png" in printed
    overlay = np.asarray(Image.open(tmp_path / "demo.png"))
    original = np.asarray(Image.open(tmp_path / "demo_input.png"))
    assert overlay.shape == original.shape == (256, 256, 3)
    assert (overlay != original).any()  # something was found and drawn


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "yolact_fast", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "segment" in result.stdout and "demo" in result.stdout


# --- sources: folders, globs, videos, cameras; outputs never shared, written atomically -----


def save_shape_image(path, seed, size=None):
    image = yf.data.synthetic_shapes(1, seed=seed)[0][0]
    if size is not None:
        image = torch.nn.functional.interpolate(image[None].float(), size)[0].to(torch.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)
    return path


def test_folder_is_searched_recursively_and_same_names_get_their_own_outputs(tmp_path, monkeypatch):
    monkeypatch.delenv("YOLACT_FAST_WEIGHTS", raising=False)
    folder = tmp_path / "in"
    save_shape_image(folder / "a.png", 1)
    save_shape_image(folder / "sub" / "a.png", 2, size=(96, 128))  # another size
    save_shape_image(folder / "a_1.png", 3)
    (folder / "notes.txt").write_text("not an image")
    (folder / "sub" / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    assert main(["segment", str(folder), "--out", str(out), "--batch-size", "2"]) == 1  # broken.png not done
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert [w for w in written if not w.startswith(".parts/")] == ["a.png", "a_1.png", "results.json", "sub/a.png"]
    assert Image.open(out / "sub" / "a.png").size == (128, 96)
    results = json.loads((out / "results.json").read_text())
    names = {im["id"]: im["file_name"] for im in results["images"]}
    assert sorted(names.values()) == sorted(str(folder / n) for n in ("a.png", "a_1.png", "sub/a.png"))
    demo = yf.load("demo")
    for image_id, name in names.items():
        expected = yf.segment(name, model=demo)
        mine = [a for a in results["annotations"] if a["image_id"] == image_id]
        assert [a["score"] for a in mine] == pytest.approx(expected.scores.tolist())


def test_glob_patterns(tmp_path):
    for name in ("x1.png", "x2.png", "y.png"):
        save_shape_image(tmp_path / "in" / name, 5)
    out = tmp_path / "out"
    assert main(["segment", str(tmp_path / "in" / "x*.png"), "--out", str(out)]) == 0
    assert visible(out) == ["results.json", "x1.png", "x2.png"]
    assert main(["segment", str(tmp_path / "in" / "z*.png"), "--out", str(out)]) == 1


@pytest.mark.parametrize(
    "layout,out,message",
    [
        (("a.png", "a.jpg"), "out", "would both write"),
        (("a.png",), ".", "would replace the input"),
    ],
)
def test_outputs_that_would_collide_are_refused_before_writing(tmp_path, capsys, layout, out, message):
    for name in layout:
        save_shape_image(tmp_path / name, 1)
    before = sorted(p.name for p in tmp_path.iterdir())
    code = main(["segment", *(str(tmp_path / n) for n in layout), "--out", str(tmp_path / out)])
    assert code == 1 and message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_bad_sources_and_out(tmp_path, capsys):
    image = save_shape_image(tmp_path / "a.png", 1)
    (tmp_path / "empty").mkdir()
    assert main(["segment", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 1
    assert "no images" in capsys.readouterr().err
    assert main(["segment", str(image), "--out", str(image)]) == 1
    assert "existing file" in capsys.readouterr().err
    assert main(["segment", str(image), "--out", str(tmp_path / "o"), "--every", "0"]) == 1
    assert "every must be >= 1" in capsys.readouterr().err
    assert main(["segment", str(image), "--out", str(tmp_path / "o"), "--start", "5", "--end", "5"]) == 1
    assert "end must be > start (5), got 5" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_outputs_replace_planted_links_instead_of_following_them(tmp_path):
    image = save_shape_image(tmp_path / "in" / "a.png", 1)
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (out / "a.png").symlink_to(victim)
    (out / "results.json").symlink_to(victim)
    assert main(["segment", str(image), "--out", str(out)]) == 0
    assert victim.read_text() == "keep me"
    assert not (out / "a.png").is_symlink() and Image.open(out / "a.png").size == (256, 256)
    assert not (out / "results.json").is_symlink()
    assert visible(out) == ["a.png", "results.json"]  # no temporary left


@pytest.mark.parametrize("link_at", ["sub", os.path.join("sub", "deeper")])
def test_folder_links_below_out_are_refused_before_writing(tmp_path, capsys, link_at):
    """A link at --out itself is the user's choice and is followed; one below it is refused."""
    save_shape_image(tmp_path / "in" / "a.png", 1)
    save_shape_image(tmp_path / "in" / "sub" / "deeper" / "b.png", 2)
    victim = tmp_path / "victim"
    victim.mkdir()
    out = tmp_path / "out"
    (out / link_at).parent.mkdir(parents=True, exist_ok=True)
    (out / link_at).symlink_to(victim, target_is_directory=True)
    assert main(["segment", str(tmp_path / "in"), "--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert "symbolic link" in error and "below --out" in error
    assert list(victim.iterdir()) == [] and not (out / "results.json").exists()
    chosen = tmp_path / "chosen"
    chosen.symlink_to(victim, target_is_directory=True)
    assert main(["segment", str(tmp_path / "in" / "a.png"), "--out", str(chosen)]) == 0
    assert visible(victim) == ["a.png", "results.json"]


@pytest.fixture(scope="module")
def shapes_video(tmp_path_factory):
    pytest.importorskip("av")
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", shape_frames(7, seed=300), fps=12)


def test_video_in_annotated_video_and_json_lines_out(shapes_video, tmp_path):
    out = tmp_path / "out"
    assert main(["segment", str(shapes_video), "--out", str(out), "--every", "2", "--start", "1"]) == 0
    frames, rate = read_video(out / "clip.mp4")
    assert len(frames) == 3 and frames[0].shape == (128, 160, 3) and rate == 6
    lines = [json.loads(line) for line in (out / "clip.jsonl").read_text().splitlines()]
    assert [line["frame_index"] for line in lines] == [1, 3, 5]
    assert sum(len(line["annotations"]) for line in lines) > 0
    assert all(a["image_id"] == line["frame_index"] for line in lines for a in line["annotations"])
    assert visible(out) == ["clip.jsonl", "clip.mp4"]


def test_video_range_without_frames_is_an_error(shapes_video, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["segment", str(shapes_video), "--out", str(out), "--start", "100"]) == 1
    assert "no frames decoded" in capsys.readouterr().err
    assert list(out.iterdir()) == []


def test_missing_camera_is_an_error(tmp_path, capsys):
    pytest.importorskip("av")
    if not sys.platform.startswith("linux"):
        pytest.skip("camera paths checked on Linux")
    assert main(["segment", "63", "--out", str(tmp_path / "o")]) == 1
    assert "camera 63" in capsys.readouterr().err


def test_interrupted_video_run_keeps_a_playable_partial_video(shapes_video, tmp_path, monkeypatch):
    from yolact_fast import video

    written = []
    original = video.VideoWriter.write

    def write_then_interrupt(self, frame):
        if len(written) == 3:
            raise KeyboardInterrupt
        written.append(1)
        original(self, frame)

    monkeypatch.setattr(video.VideoWriter, "write", write_then_interrupt)
    out = tmp_path / "out"
    assert main(["segment", str(shapes_video), "--out", str(out), "--batch-size", "2"]) == 130
    frames, _ = read_video(out / "clip.mp4")
    assert len(frames) == 3
    lines = (out / "clip.jsonl").read_text().splitlines()
    assert [json.loads(line)["frame_index"] for line in lines] == [0, 1, 2]
    assert visible(out) == ["clip.jsonl", "clip.mp4"]


def test_sigint_to_a_video_run_leaves_a_playable_partial_video(shapes_video, tmp_path):
    """A real Ctrl-C: SIGINT to a subprocess once it has written its second frame."""
    import signal

    out = tmp_path / "out"
    code = (
        # A shell that starts a job in the background ignores SIGINT for it, and Python keeps an
        # inherited SIG_IGN: restore the default handler, as an interactive run has it.
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "import sys, time, yolact_fast.video as v\n"
        "write = v.VideoWriter.write\n"
        "def slow(self, frame):\n"
        "    time.sleep(0.5)\n"
        "    write(self, frame)\n"
        "    if self.frames == 2: print('two', flush=True)\n"
        "v.VideoWriter.write = slow\n"
        "from yolact_fast.cli import main\n"
        f"sys.exit(main(['segment', {str(shapes_video)!r}, '--out', {str(out)!r}, '--batch-size', '1']))\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "two"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=120) == 130
    finally:
        if process.poll() is None:
            process.kill()
    frames, _ = read_video(out / "clip.mp4")
    assert 2 <= len(frames) < 7
    # A frame's line follows its video frame: the signal may fall between the two.
    assert len(frames) - 1 <= len((out / "clip.jsonl").read_text().splitlines()) <= len(frames)
    assert "interrupted" in process.stdout.read()


def test_interrupted_image_run_writes_the_results_so_far(tmp_path, monkeypatch):
    from yolact_fast import jobs

    for seed in range(3):
        save_shape_image(tmp_path / "in" / f"{seed}.png", seed)
    saved = []
    original = jobs.save_overlay

    def save_then_interrupt(*args):
        if len(saved) == 1:
            raise KeyboardInterrupt
        saved.append(1)
        original(*args)

    monkeypatch.setattr(jobs, "save_overlay", save_then_interrupt)
    out = tmp_path / "out"
    assert main(["segment", str(tmp_path / "in"), "--out", str(out), "--batch-size", "1"]) == 130
    results = json.loads((out / "results.json").read_text())
    assert [im["id"] for im in results["images"]] == [0]
    assert visible(out) == ["0.png", "results.json"]


def test_source_kinds_and_names(tmp_path):
    from yolact_fast.sources import find_sources, output_paths

    save_shape_image(tmp_path / "a" / "x.png", 1)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "clip.MKV").write_bytes(b"")
    (tmp_path / "b" / "notes.txt").write_text("")
    arguments = [
        str(tmp_path / "a"),
        str(tmp_path / "b" / "*"),
        "rtsp://host/live",
        "2",
        str(tmp_path / "a" / "x.png"),
    ]  # the image again: kept once
    sources, skipped = find_sources(arguments)
    assert [(s.kind, s.name) for s in sources] == [
        ("image", os.path.join("a", "x")),
        ("video", os.path.join("b", "clip")),
        ("stream", "stream0"),
        ("camera", "camera2"),
    ]
    assert skipped == {"not an image or video": 1}
    paths = output_paths(sources, str(tmp_path / "out"))
    assert paths[1] == {
        "video": str(tmp_path / "out" / "b" / "clip.mp4"),
        "results": str(tmp_path / "out" / "b" / "clip.jsonl"),
    }
    assert paths[3]["video"].endswith("camera2.mp4")


# Recursive patterns through link loops (each link doubles glob's recursion at every level)
# must end; matches agree with glob's where there are no links.
LINK_LOOP_GLOB = """
import glob, os
from yolact_fast.sources import _glob, find_sources
os.makedirs("g/sub/.hidden")
for name in ("g/a.png", "g/sub/b.png", "g/sub/.hidden/c.png", "g/.d.png", "g/sub/e.txt"):
    open(name, "w").close()
patterns = ["g/**/*.png", "**/*.png", "g/*/*.png", "g/**/sub/*.png", "g/**", os.path.abspath("g") + "/**/*.png"]
expected = {{p: sorted(x for x in glob.glob(p, recursive=True) if os.path.isfile(x)) for p in patterns}}
for index in range(4):
    os.symlink(".", f"g/loop{{index}}")
    os.symlink("..", f"g/sub/up{{index}}")
for pattern in patterns:
    found = sorted(x for x in _glob(pattern) if os.path.isfile(x))
    assert found == expected[pattern] or pattern == "g/*/*.png", (pattern, found, expected[pattern])
sources, skipped = find_sources(["g/**/*"])
assert sorted(s.name for s in sources) == ["a", os.path.join("sub", "b")] and skipped == {{"not an image or video": 1}}
"""


def test_recursive_globs_do_not_follow_link_loops(tmp_path):
    subprocess.run(
        [sys.executable, "-c", LINK_LOOP_GLOB.format()],
        cwd=tmp_path,
        check=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))},
    )
