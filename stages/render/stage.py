"""Render stage: Timeline -> final.mp4, captions.srt, captions.ass, thumbnail.jpg (Render artifact).

The default renderer is ffmpeg, built from the timeline: one encoder process
burns the ASS captions (libass), mixes the narration with the music bed
(ducked under speech by a volume envelope built from the caption timings) and
encodes H.264/AAC once; it is fed raw frames by one short ffmpeg per segment,
run in order, which fits the picture to the vertical frame over a blurred fill
of itself, pans (animated crop) or zooms (zoompan) stills, and bakes in the
crossfade from the previous segment. Each distinct still is fitted over its
fill once, before the encoder starts, into one raw frame that the producers
showing it only pan or zoom (removed after the encode). `renderer="moviepy"` renders the same
timeline with MoviePy (stages/render/moviepy_renderer.py), kept as the slower reference.
Both are registered in `BACKENDS` and follow the same plan (stages/render/plan.py).

It decides nothing about the edit (that is the timeline's job). It writes
everything into its own folder, run_dir/render/, each file created afresh
(stages/common/outputs.py: never through a link planted at its name), and links the
finished deliverables (final.mp4, captions, thumbnail) to the top of the run
directory, where users look for them. A failed render removes the video it was
writing; one that filled the disk says so.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from aishorts.ipc.artifacts import Credit, Render, Segment, Timeline
from aishorts.ipc.files import ArtifactError
from aishorts.ipc.params import RenderParams
from aishorts.stages.common.context import StageContext, StageError
from aishorts.stages.common.media import MediaError, MediaInfo, ffmpeg_exe, probe
from aishorts.stages.common.outputs import (
    copy_file, create, fresh, link_or_copy, raise_if_out_of_space, real_folder, removed_on_failure, write_text,
)
from aishorts.stages.common.runtime import cpu_budget
from aishorts.stages.harness import stage_main
from aishorts.stages.render.captions import Font, FontMissing, caption_style, find_font, write_ass, write_srt
from aishorts.stages.render.plan import (
    DUCK_RAMP_S, MUSIC_FADE_IN_S, MUSIC_FADE_OUT_S, STILL_MARGIN, Cut, double_rate, even, frame_plan, speech_spans,
    x264_settings,
)

Params = RenderParams

DURATION_TOLERANCE_S = 0.2


def run(ctx: StageContext, params: Params, *, timeline: Timeline) -> Render:
    check_timeline(ctx, timeline)
    try:
        font = find_font(" ".join(caption.text for caption in timeline.captions))
    except FontMissing as exc:
        raise StageError(str(exc)) from None
    srt, ass = ctx.out_dir / "captions.srt", ctx.out_dir / "captions.ass"
    write_srt(timeline.captions, srt)
    write_ass(timeline.captions, ass, font, caption_style(timeline))
    video, thumbnail = ctx.out_dir / "final.mp4", ctx.out_dir / "thumbnail.jpg"
    partial = ctx.out_dir / "final.partial.mp4"
    with removed_on_failure(partial), ctx.phase("encode"):
        BACKENDS[params.renderer](ctx, timeline, params, ass, font, fresh(partial))
    with removed_on_failure(video, thumbnail):
        partial.replace(video)
        info = verify_video(video, timeline)
        make_thumbnail(video, timeline, thumbnail)
        credits = write_credits(ctx.out_dir / CREDITS_FILE, timeline)
        publish(ctx.run_dir, [video, srt, ass, thumbnail, *([credits] if credits else [])])
    ctx.progress("render done", 1.0)
    return Render(
        video=ctx.rel(video), srt=ctx.rel(srt), ass=ctx.rel(ass), thumbnail=ctx.rel(thumbnail),
        duration_s=info.duration_s or 0.0, width=info.video.width, height=info.video.height,
        fps=info.video.fps, has_audio=info.audio is not None, renderer=params.renderer,
        size_bytes=video.stat().st_size, credits=ctx.rel(credits) if credits else None,
    )


CREDITS_FILE = "credits.txt"
CREDITS_HEADER = (
    "Pictures shown in this short, and their licences. Publish these credits with the video (e.g. in its\n"
    "description): CC BY-SA 4.0 pictures (OpenMoji) need the credit and a link to the licence, and changed\n"
    "versions of them, shared apart from the video, need the same licence.\n"
)


def write_credits(path: Path, timeline: Timeline) -> Path | None:
    """credits.txt for the pictures the short shows (each once, in order of appearance); None when it shows none."""
    shown: dict[tuple[str, str], Credit] = {}
    for segment in timeline.segments:
        for credit in segment.credits:
            shown.setdefault((credit.source, credit.file), credit)
    if not shown:
        return None
    lines = [CREDITS_HEADER]
    lines += [f"- {c.title}: {c.source} {c.file}, {c.licence}" for c in shown.values()]
    attributions = sorted({c.attribution for c in shown.values() if c.attribution})
    if attributions:
        lines += ["", *attributions]
    return write_text(path, "\n".join(lines) + "\n")


def publish(run_dir: Path, files: list[Path]) -> None:
    """Hard-link (or copy) each finished file to the top of the run directory, replacing older ones atomically.

    The names there are replaced, never written through: whatever stood at them (a link included) is gone.
    """
    for source in files:
        temporary = link_or_copy(source, run_dir / f".{source.name}.publish")
        temporary.replace(run_dir / source.name)


def check_timeline(ctx: StageContext, timeline: Timeline) -> None:
    """Refuse a timeline this stage cannot render faithfully, before spending minutes on it."""
    if timeline.duration_s > timeline.max_duration_s + 1e-6:
        raise StageError(
            f"the timeline lasts {timeline.duration_s:.1f} s, over the {timeline.max_duration_s:.0f} s"
            f" that {timeline.platform} allows; shorten the script and rerun from the script stage"
        )
    if not timeline.segments:
        raise StageError("the timeline has no segments; rerun the timeline stage")
    frame = 1.0 / timeline.fps
    edges = [timeline.segments[0].start] + [s.end for s in timeline.segments]
    starts = [s.start for s in timeline.segments] + [timeline.duration_s]
    if any(abs(a - b) > frame for a, b in zip(edges, starts)) or any(s.end <= s.start for s in timeline.segments):
        raise StageError("the timeline's segments do not cover it end to end; rerun the timeline stage")
    if any(s.end - s.start < frame for s in timeline.segments):
        raise StageError("the timeline has a segment shorter than one frame; rerun the timeline stage")
    payloads = [timeline.narration_wav] + [s.path for s in timeline.segments]
    if timeline.music:
        payloads.append(timeline.music.path)
    for relative in payloads:
        try:
            exists = ctx.path(relative).is_file()
        except ArtifactError as exc:
            raise StageError(f"timeline payload refused: {exc}") from None
        if not exists:
            raise StageError(f"{relative} is missing from the run directory; rerun the stage that wrote it")


def _duck_expr(spans: list[tuple[float, float]], gain_db: float, duck_db: float, ramp_s: float = DUCK_RAMP_S) -> str:
    """ffmpeg `volume` expression: gain_db in silence, gain_db + duck_db under speech, linear ramps of ramp_s."""
    terms = [f"clip(min((t-{s - ramp_s:.3f})/{ramp_s},({e + ramp_s:.3f}-t)/{ramp_s}),0,1)" for s, e in spans]
    amount = terms[0] if terms else "0"
    for term in terms[1:]:
        amount = f"max({amount},{term})"
    return f"pow(10,({gain_db:.2f}+({duck_db:.2f})*{amount})/20)"


def _fill_chain(src: str, tag: str, width: int, height: int) -> list[str]:
    """Fit the picture inside width x height over a blurred, cropped copy of itself (blurred at 1/4 size)."""
    bw, bh = even(width / 4), even(height / 4)
    return [
        f"{src}split=2[{tag}a][{tag}b]",
        f"[{tag}a]scale={bw}:{bh}:force_original_aspect_ratio=increase,crop={bw}:{bh},boxblur=8:2,"
        f"scale={width}:{height}[{tag}bg]",
        f"[{tag}b]scale={width}:{height}:force_original_aspect_ratio=decrease:force_divisible_by=2[{tag}fg]",
        f"[{tag}bg][{tag}fg]overlay=(W-w)/2:(H-h)/2,format=yuv420p",
    ]


def _still_motion(motion: str, cut: Cut, skip: int, count: int, width: int, height: int, fps: int) -> str:
    """Frames [skip, skip+count) of a still's pan or zoom, whose progress runs over all cut.frames."""
    last = max(cut.frames - 1, 1)
    if motion in ("zoom_in", "zoom_out"):
        progress = f"(on+{skip})/{last}"
        zoom = f"1+{STILL_MARGIN}*{progress}" if motion == "zoom_in" else f"{1 + STILL_MARGIN}-{STILL_MARGIN}*{progress}"
        return (f"zoompan=z='{zoom}':x='(iw-iw/zoom)/2':y='(ih-ih/zoom)/2':d={count + 2}"
                f":s={width}x{height}:fps={fps}")
    looped = f"loop=loop={count + 1}:size=1:start=0,settb=expr=1/{fps},setpts=N"
    if motion in ("pan_left", "pan_right"):
        progress = f"(n+{skip})/{last}"
        x = f"(iw-{width})*{progress}" if motion == "pan_right" else f"(iw-{width})*(1-{progress})"
        return f"{looped},crop={width}:{height}:x='{x}':y='(ih-{height})/2'"
    return f"{looped},scale={width}:{height}"


def segment_filters(index: int, segment: Segment, cut: Cut, timeline: Timeline, skip: int, count: int,
                    label: str, laid_out: bool = False) -> list[str]:
    """Filter statements turning input `index` into [label]: frames [skip, skip+count) of the segment's picture.

    Video inputs are already seeked to the first of those frames (see segment_inputs). A still given `laid_out`
    is already the frame lay_out_stills drew for it, so only its pan or zoom is left to draw.
    """
    w, h, fps = timeline.width, timeline.height, timeline.fps
    tail = f"trim=end_frame={count},setpts=PTS-STARTPTS,fps={fps},setsar=1,format=yuv420p[{label}]"
    tag = f"{label}{index}"
    if segment.media == "still":
        motion = f"{_still_motion(segment.motion, cut, skip, count, w, h, fps)},{tail}"
        if laid_out:
            return [f"[{index}:v]trim=end_frame=1,setpts=PTS-STARTPTS,{motion}"]
        chain = _fill_chain(f"[{index}:v]trim=end_frame=1,setpts=PTS-STARTPTS,", tag, *still_size(timeline))
        chain[-1] += f",{motion}"
        return chain
    chain = _fill_chain(f"[{index}:v]fps={fps},setpts=PTS-STARTPTS,", tag, w, h)
    # A source shorter than its segment holds its last frame: the timeline never loops a clip.
    chain[-1] += f",tpad=stop_mode=clone:stop_duration={count / fps + 1:.3f},{tail}"
    return chain


def still_size(timeline: Timeline) -> tuple[int, int]:
    """The size a still is laid out at: larger than the frame by STILL_MARGIN, so it can pan or zoom."""
    return even(timeline.width * (1 + STILL_MARGIN)), even(timeline.height * (1 + STILL_MARGIN))


def segment_inputs(path: Path, segment: Segment, skip: int, count: int, fps: int,
                   laid_out: tuple[int, int] | None = None) -> list[str]:
    if segment.media == "still":
        if laid_out:  # one raw yuv420p frame of that size (lay_out_stills)
            return ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{laid_out[0]}x{laid_out[1]}", "-i", str(path)]
        return ["-i", str(path)]
    # One decoding thread: the encoder is the bottleneck, and each decoder thread holds frames of its own.
    return ["-threads", "1", "-an", "-sn", "-dn", "-ss", f"{segment.source_offset_s + skip / fps:.3f}",
            "-t", f"{count / fps + 1.0:.3f}", "-i", str(path)]


def producer_graph(ctx: StageContext, timeline: Timeline, cuts: list[Cut], i: int,
                   laid_out: dict[str, Path] | None = None) -> tuple[list[str], str]:
    """Inputs and filtergraph that draw segment i's own frames, the crossfade from segment i-1 baked in.

    `laid_out` maps a still's timeline path to its frame already laid out (lay_out_stills); stills missing
    from it are laid out here, in this producer.
    """
    segment, cut, fps = timeline.segments[i], cuts[i], timeline.fps
    laid_out = laid_out or {}
    size = still_size(timeline)

    def source(seg: Segment) -> tuple[Path, tuple[int, int] | None]:
        done = laid_out.get(seg.path) if seg.media == "still" else None
        return (done, size) if done else (ctx.path(seg.path), None)

    path, ready = source(segment)
    if cut.fade_in == 0:
        return segment_inputs(path, segment, 0, cut.own, fps, ready), ";".join(
            segment_filters(0, segment, cut, timeline, 0, cut.own, "v", bool(ready)))
    before, prev_cut = timeline.segments[i - 1], cuts[i - 1]
    before_path, before_ready = source(before)
    inputs = segment_inputs(before_path, before, prev_cut.own, cut.fade_in, fps, before_ready)
    inputs += segment_inputs(path, segment, 0, cut.own, fps, ready)
    lines = segment_filters(0, before, prev_cut, timeline, prev_cut.own, cut.fade_in, "a", bool(before_ready))
    lines += segment_filters(1, segment, cut, timeline, 0, cut.own, "b", bool(ready))
    # Only the crossfade's own frames pass through xfade, which works in yuv444p: the rest of the
    # segment would otherwise be converted to 4:4:4 and back, frame by frame (3x the producer's CPU).
    lines += [
        f"[b]split[bfade][brest];[bfade]trim=end_frame={cut.fade_in}[bhead]",
        f"[brest]trim=start_frame={cut.fade_in},setpts=PTS-STARTPTS[btail]",
        f"[a][bhead]xfade=transition=fade:duration={cut.fade_in / fps:.6f}:offset=0,format=yuv420p[faded]",
        "[faded][btail]concat=n=2:v=1:a=0[v]",
    ]
    return inputs, ";".join(lines)


def lay_out_stills(ctx: StageContext, timeline: Timeline, folder: Path, log_path: Path) -> dict[str, Path]:
    """Each distinct still of the timeline laid out once (fitted over its blurred fill, margin included), as one
    raw yuv420p frame in `folder`, by one ffmpeg: the segment producers then only pan or zoom it. Without this,
    every still was decoded and laid out again by each producer that shows it (its own segment and the
    crossfade into the next one; a picture shown three times, six times over).
    """
    paths = list(dict.fromkeys(s.path for s in timeline.segments if s.media == "still"))
    if not paths:
        return {}
    w, h = still_size(timeline)
    inputs, lines, outputs, laid_out = [], [], [], {}
    for n, relative in enumerate(paths):
        inputs += ["-i", str(ctx.path(relative))]
        chain = _fill_chain(f"[{n}:v]trim=end_frame=1,setpts=PTS-STARTPTS,", f"s{n}", w, h)
        chain[-1] += f"[s{n}]"
        lines += chain
        target = fresh(folder / f"still-{n}.yuv")
        outputs += ["-map", f"[s{n}]", "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "yuv420p", target.name]
        laid_out[relative] = target
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", *inputs,
               "-filter_complex", ";".join(lines), *outputs]
    with create(log_path) as log:
        done = subprocess.run(command, cwd=folder, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                              check=False)
    if done.returncode != 0 or any(p.stat().st_size != w * h * 3 // 2 for p in laid_out.values()):
        raise _ffmpeg_failure("ffmpeg could not lay out the stills", log_path)
    return laid_out


def encoder_graph(timeline: Timeline, ass_name: str, fonts_dir: str, music: bool) -> str:
    """Raw frames in (input 0): captions burned by libass (unless turned off); narration (1) and music (2) mixed."""
    burn = f"ass=filename={ass_name}:fontsdir={fonts_dir}," if timeline.caption_look.show else ""
    lines = [f"[0:v]{burn}format=yuv420p[vout]"]
    lines += audio_filters(timeline, 1, 2 if music else None)
    return ";\n".join(lines) + "\n"


def audio_filters(timeline: Timeline, narration_input: int, music_input: int | None) -> list[str]:
    """Narration padded (never cut, never looped) to the video's length, plus the ducked music bed."""
    d = timeline.duration_s
    fmt = "aresample=48000,aformat=sample_fmts=fltp:channel_layouts=stereo"
    level = f",volume={timeline.narration_gain_db:.3f}dB" if timeline.narration_gain_db else ""
    voice = f"[{narration_input}:a]{fmt}{level},apad=whole_dur={d:.6f},atrim=duration={d:.6f}"
    if music_input is None or timeline.music is None:
        return [f"{voice}[aout]"]
    music = timeline.music
    envelope = _duck_expr(speech_spans(timeline.captions), music.gain_db, music.duck_db)
    fade_out_at = max(d - MUSIC_FADE_OUT_S, 0.0)
    return [
        f"{voice}[voice]",
        f"[{music_input}:a]{fmt},atrim=duration={d:.6f},asetpts=PTS-STARTPTS,volume='{envelope}':eval=frame,"
        f"afade=t=in:d={MUSIC_FADE_IN_S},afade=t=out:st={fade_out_at:.3f}:d={MUSIC_FADE_OUT_S}[music]",
        "[voice][music]amix=inputs=2:duration=first:normalize=0[aout]",
    ]


"""Under a render ceiling below limits.toml's `lean_below` the encoder is `lean`: slice threads instead of frame threads (each frame
thread holds frames of its own) and no B-frames (each waits in x264's buffers for the frame after it). On the
renderer's own 1080x1920 frames: encoder peak 273M -> 162M, same wall time, PSNR -0.43 dB, SSIM -0.0002
(BENCHMARKS.md, "encoder"). Not the default: slice threads alone encode 1.2x slower than frame threads on a
quiet machine. The threshold sits above the default encoder's need (the render stage peaked at 511M to 522M
with it) so that no ceiling is too small for the default and too large for the lean one."""


def lean_encoder(ctx: StageContext) -> bool:
    """Whether this call's ceiling asks for the leaner encoder; said in the log when it does."""
    if ctx.ceiling_bytes and ctx.ceiling_bytes < (lean_below := ctx.thresholds.get("lean_below", 0)):
        ctx.log(f"a ceiling under {lean_below >> 20}M: encoding with slice threads and no B-frames to keep the"
                " encoder's memory down (a little less quality at the same bitrate)")
        return True
    return False


def encoder_args(timeline: Timeline, params: Params, lean: bool = False) -> list[str]:
    preset, x264 = x264_settings(params.preset)
    x264 += ["sliced-threads=1", "bframes=0"] if lean else []
    args = [
        "-c:v", "libx264", "-preset", preset, "-profile:v", "high", "-pix_fmt", "yuv420p",
        "-b:v", timeline.video_bitrate, "-maxrate", timeline.video_bitrate,
        "-bufsize", double_rate(timeline.video_bitrate), "-r", str(timeline.fps), "-g", str(2 * timeline.fps),
        "-c:a", "aac", "-b:a", timeline.audio_bitrate, "-ar", "48000", "-ac", "2",
        "-movflags", "+faststart", "-t", f"{timeline.duration_s:.6f}",
        *(["-x264-params", ":".join(x264)] if x264 else []),
    ]
    threads = params.threads or (cpu_budget() if cpu_budget() < len(os.sched_getaffinity(0)) else 0)
    if threads > 0:
        args += ["-threads", str(threads), "-filter_complex_threads", str(threads)]
    return args


def render_ffmpeg(ctx: StageContext, timeline: Timeline, params: Params, ass: Path, font: Font, output: Path) -> None:
    """One encoder ffmpeg fed raw frames by one short-lived ffmpeg per segment, in order.

    A single filtergraph over every segment opens (and buffers frames from) all
    sources at once: with 1080p clips a 60 s, 14-segment timeline peaked at
    1.32 GB that way, against 0.60 GB here, where at most two sources are open
    at a time whatever the number of segments. Frames travel through a pipe,
    raw, and are encoded once.
    """
    fonts = real_folder(ctx.out_dir / "fonts")
    copy_file(font.path, fonts / font.path.name)
    script = write_text(ctx.out_dir / "filtergraph.txt",
                        encoder_graph(timeline, ass.name, fonts.name, timeline.music is not None))
    w, h, fps = timeline.width, timeline.height, timeline.fps
    audio = ["-i", str(ctx.path(timeline.narration_wav))]
    if timeline.music is not None:
        audio += ["-stream_loop", "-1", "-i", str(ctx.path(timeline.music.path))]
    encoder = [
        ffmpeg_exe(), "-hide_banner", "-y", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{w}x{h}",
        "-framerate", str(fps), "-i", "pipe:0", *audio, "-/filter_complex", script.name,
        "-map", "[vout]", "-map", "[aout]", *encoder_args(timeline, params, lean_encoder(ctx)),
        "-progress", "pipe:1", "-nostats", output.name,
    ]
    cuts = frame_plan(timeline)
    stills = real_folder(ctx.out_dir / "stills")
    try:
        laid_out = lay_out_stills(ctx, timeline, stills, ctx.out_dir / "stills.log")
        producers = [producer_graph(ctx, timeline, cuts, i, laid_out) for i in range(len(cuts))]
        write_text(ctx.out_dir / "segments.txt", "\n\n".join(g for _, g in producers) + "\n")
        commands = [producer_command(inputs, graph) for inputs, graph in producers]
        run_pipeline(encoder, commands, ctx.out_dir, timeline.duration_s, ctx.progress, ctx.out_dir / "ffmpeg.log")
    finally:
        fresh(stills)  # a few MB of raw frames each; nothing reads them after the encode


def producer_command(inputs: list[str], graph: str) -> list[str]:
    """The ffmpeg that draws one segment's frames, raw yuv420p on its stdout."""
    return [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", *inputs, "-filter_complex", graph,
            "-map", "[v]", "-f", "rawvideo", "-pix_fmt", "yuv420p", "pipe:1"]


def run_pipeline(encoder_cmd: list[str], producer_cmds: list[list[str]], cwd: Path, duration_s: float,
                 progress: Callable[[str, float | None], None], log_path: Path) -> None:
    """Start the encoder, run the producers one after another into its stdin, then let it finish.

    A failure on a full disk is an OSError(ENOSPC), whatever ffmpeg managed to log.
    """
    with create(log_path) as log:
        encoder = subprocess.Popen(encoder_cmd, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        reader = threading.Thread(target=_follow_progress, args=(encoder, duration_s, progress), daemon=True)
        reader.start()
        producer: subprocess.Popen | None = None
        try:
            assert encoder.stdin is not None
            for number, command in enumerate(producer_cmds, start=1):
                producer = subprocess.Popen(command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=encoder.stdin,
                                            stderr=log)
                if producer.wait() != 0:
                    if encoder.poll() is None:
                        raise _ffmpeg_failure(f"ffmpeg could not draw segment {number}", log_path)
                    break
            encoder.stdin.close()
            code = encoder.wait()
            reader.join(timeout=10)
        finally:
            for proc in (producer, encoder):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait()
    if code != 0:
        raise _ffmpeg_failure(f"ffmpeg failed (exit {code})", log_path)


def _ffmpeg_failure(what: str, log_path: Path) -> StageError:
    """The error for a failed ffmpeg, with its log's tail; raises OSError(ENOSPC) instead if the disk filled up."""
    tail = _log_tail(log_path)
    raise_if_out_of_space(tail, log_path.parent)
    return StageError(f"{what}: {tail} (full log: {log_path})")


def _follow_progress(proc: subprocess.Popen, duration_s: float, progress: Callable[[str, float | None], None]) -> None:
    reported = -1.0
    assert proc.stdout is not None
    for raw in proc.stdout:
        key, _, value = raw.decode(errors="replace").strip().partition("=")
        if key != "out_time_us" or not value.lstrip("-").isdigit():
            continue
        fraction = min(max(int(value) / 1e6 / max(duration_s, 1e-6), 0.0), 1.0)
        if fraction - reported >= 0.02:
            reported = fraction
            progress(f"encoding {fraction:.0%}", round(fraction * 0.95, 4))


def _log_tail(log_path: Path, lines: int = 6) -> str:
    with contextlib.suppress(OSError):
        text = log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])
    return "no log"


def verify_video(video: Path, timeline: Timeline) -> MediaInfo:
    """The encoded file must be what the timeline asked for: size, rate, codecs, length."""
    try:
        info = probe(video)
    except MediaError as exc:
        raise StageError(f"the render wrote an unreadable file: {exc}") from None
    v, a = info.video, info.audio
    problems = []
    if v is None or (v.codec, v.pix_fmt, v.width, v.height) != ("h264", "yuv420p", timeline.width, timeline.height):
        problems.append(f"video stream {v} (expected h264 yuv420p {timeline.width}x{timeline.height})")
    elif abs(v.fps - timeline.fps) > 0.01:
        problems.append(f"{v.fps} fps (expected {timeline.fps})")
    if a is None or a.codec != "aac":
        problems.append(f"audio stream {a} (expected aac)")
    if info.duration_s is None or abs(info.duration_s - timeline.duration_s) > DURATION_TOLERANCE_S:
        problems.append(f"duration {info.duration_s} s (expected {timeline.duration_s:.2f} s)")
    if problems:
        raise StageError(f"{video.name} is not what the timeline asked for: {'; '.join(problems)}")
    return info


def make_thumbnail(video: Path, timeline: Timeline, output: Path) -> Path:
    """A frame from the middle of the first shot (settled, after any fade)."""
    first = timeline.segments[0]
    at = min((first.start + first.end) / 2, max(timeline.duration_s - 0.1, 0.0))
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-loglevel", "error", "-ss", f"{at:.3f}", "-i", str(video),
         "-frames:v", "1", "-q:v", "3", str(fresh(output))],
        capture_output=True, text=True, errors="replace", timeout=120, check=False,
    )
    if proc.returncode != 0 or not output.is_file():
        raise_if_out_of_space(proc.stderr, output.parent)
        raise StageError(f"could not take a thumbnail from {video.name}: {proc.stderr.strip()[-300:]}")
    return output


Renderer = Callable[[StageContext, Timeline, RenderParams, Path, Font, Path], None]
"""Encodes a timeline into an MP4: (ctx, timeline, params, captions.ass, font, output path)."""


def _render_moviepy(ctx: StageContext, timeline: Timeline, params: Params, ass: Path, font: Font, output: Path) -> None:
    # Imported here so that the ffmpeg renderer never loads the reference one; MoviePy draws the
    # captions itself, with the same font, so it has no use for captions.ass.
    from aishorts.stages.render.moviepy_renderer import render_moviepy

    render_moviepy(ctx, timeline, params, font, output)


BACKENDS: dict[str, Renderer] = {"ffmpeg": render_ffmpeg, "moviepy": _render_moviepy}
"""Every renderer by its `RenderParams.renderer` name."""


if __name__ == "__main__":
    stage_main(run, Params)
