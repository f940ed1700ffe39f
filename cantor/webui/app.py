"""The Gradio app of ``cantor webui``: tabs Convert, Batch, Train and Models over
:class:`cantor.webui.handlers.WebUI`, and a jobs table. Offline: analytics off, no share link, only
Gradio's bundled fonts and scripts (nothing is fetched from the internet).

HTTP API (``gradio_client.Client(url).predict(..., api_name=...)``): ``/convert`` (song,
experiment, singer (a name or a mix "A:0.7,B:0.3"), key shift, autoshift, steps, F0 extractor,
index rate, protect -> job id, status, audio, download, real-time factors, figure), ``/batch``, ``/train``, ``/train_status``, ``/cancel``, ``/models``,
``/jobs``, ``/experiment_info``.
"""
from __future__ import annotations

from cantor.webui.handlers import RequestError, WebUI, f0_extractors
from cantor.webui.training import tensorboard_command
from utils.schema import InferenceConfig

MODELS_HEADERS = ["experiment", "kind", "step", "singers", "checkpoint file", "checkpoints",
                  "exports", "folder"]
JOBS_HEADERS = ["job", "lane", "what", "state", "%", "message"]
RTF_HEADERS = ["stage", "real-time factor"]
TIMER_SECONDS = 2.0


def _gradio():
    import gradio as gr  # analytics are off: utils.offline, imported with cantor.webui.handlers
    return gr


def build_app(ui: WebUI):
    """The gr.Blocks of the UI (not launched)."""
    gr = _gradio()

    def fail(e: RequestError):
        return gr.Error(str(e), print_exception=False)

    def experiment_choices():
        return [(e.label, e.name) for e in ui.experiments()]

    def on_experiment(multiselect: bool):
        def update(name):
            """Singers, default steps and F0 extractor of the chosen experiment."""
            if not name:
                return gr.update(choices=[], value=[] if multiselect else None), None, None
            try:
                exp = ui.experiment(name)
            except RequestError as e:
                raise fail(e) from None
            first = exp.singers[0] if exp.singers else None
            value = ([first] if first else []) if multiselect else first
            return (gr.update(choices=list(exp.singers), value=value), exp.default_steps,
                    exp.f0_extractor)
        return update

    def on_convert(song, name, singer, key_shift, autoshift, steps, f0, index_rate, protect,
                   progress=gr.Progress()):
        try:
            job = ui.submit_convert(song, name, singer, key_shift, autoshift, steps, f0,
                                    index_rate, protect)
            yield job.id, job.status_line(), None, None, None, None
            for job in ui.follow(job):
                progress(job.progress, desc=job.message)
                if not job.ended:
                    yield job.id, job.status_line(), None, None, None, None
        except RequestError as e:
            raise fail(e) from None
        if job.state != "done":
            yield job.id, job.status_line(), None, None, None, None
            return
        r = job.result
        rtf = [[stage, round(v, 4)] for stage, v in r.rtf.items()]
        yield job.id, r.summary, str(r.wav_path), str(r.wav_path), rtf, r.figure

    def on_batch(name, folder, singers, key_shift, autoshift, steps, f0, output,
                 progress=gr.Progress()):
        try:
            job = ui.submit_batch(name, folder, singers, key_shift, autoshift, steps, f0, output)
            yield job.id, job.status_line(), []
            for job in ui.follow(job):
                progress(job.progress, desc=job.message)
                if not job.ended:
                    yield job.id, job.status_line(), []
        except RequestError as e:
            raise fail(e) from None
        if job.state != "done":
            yield job.id, job.status_line(), []
            return
        models = ui.sandbox.root("models")
        rows = [[str(p.relative_to(models) if p.is_relative_to(models) else p), "converted"]
                for p in job.result["written"]]
        rows += [[str(p), f"failed: {msg}"] for p, msg in job.result["failed"]]
        yield job.id, job.result["summary"], rows

    def on_train(stage):
        def start(project, dataset, config, resume, max_steps):
            try:
                job = ui.submit_train(project, stage, dataset, config, resume, max_steps)
            except RequestError as e:
                raise fail(e) from None
            folder = ui.sandbox.root("models") / project
            return job.id, job.status_line(), tensorboard_command(folder)
        return start

    def train_status(job_id):
        job = ui.train_job(job_id)
        if job is None:
            return "no training job yet", "", None
        import pandas as pd
        losses = job.metrics.get("loss", [])
        curve = pd.DataFrame(losses, columns=["step", "loss"]) if losses else None
        return job.status_line(), "\n".join(job.log[-40:]), curve

    def on_cancel(job_id):
        try:
            return ui.cancel(job_id)
        except RequestError as e:
            raise fail(e) from None

    def refresh_models():
        choices = experiment_choices()
        return ui.models_table(), gr.update(choices=choices), gr.update(choices=choices)

    with gr.Blocks(title="Cantor", analytics_enabled=False) as app:
        gr.Markdown("# Cantor: singing voice conversion\n"
                    f"Models folder `{ui.sandbox.root('models')}`, data folder "
                    f"`{ui.sandbox.root('data')}`. Paths you type are taken inside these folders.")
        choices = experiment_choices()
        extractors = list(f0_extractors())
        with gr.Tab("Convert"):
            with gr.Row():
                with gr.Column():
                    song = gr.Audio(sources=["upload", "microphone"], type="filepath",
                                    label="Song (upload or record)", elem_id="song")
                    c_exp = gr.Dropdown(choices, value=None, label="Experiment",
                                        allow_custom_value=True, elem_id="convert-experiment")
                    c_singer = gr.Dropdown([], label="Target singer (or a mix: A:0.7,B:0.3)",
                                           allow_custom_value=True, elem_id="convert-singer")
                    with gr.Row():
                        c_key = gr.Slider(-24, 24, value=0, step=1, label="Key shift (semitones)")
                        c_auto = gr.Checkbox(False, label="Autoshift to the singer's range")
                    with gr.Row():
                        c_steps = gr.Number(None, precision=0, minimum=1, label="Sampler steps")
                        c_f0 = gr.Dropdown(extractors, value=None, label="F0 extractor")
                    with gr.Row():
                        c_index = gr.Slider(0, 1, value=0, step=0.05, elem_id="convert-index-rate",
                                            label="Index rate (feature retrieval; needs `cantor "
                                                  "index`)")
                        c_protect = gr.Slider(0, 0.5, value=InferenceConfig().protect, step=0.01,
                                              elem_id="convert-protect",
                                              label="Protect consonants (0.5: off)")
                    with gr.Row():
                        c_go = gr.Button("Convert", variant="primary", elem_id="convert-button")
                        c_stop = gr.Button("Cancel")
                with gr.Column():
                    c_job = gr.Number(None, label="Job", interactive=False, precision=0)
                    c_status = gr.Textbox(label="Status", interactive=False, elem_id="convert-status")
                    c_out = gr.Audio(type="filepath", label="Converted", interactive=False,
                                     elem_id="converted")
                    c_file = gr.File(label="Download", interactive=False)
                    c_rtf = gr.Dataframe(headers=RTF_HEADERS, label="Real-time factor per stage",
                                         interactive=False)
            c_plot = gr.Plot(label="Mel and F0: source and output", elem_id="convert-plot")
        with gr.Tab("Batch"):
            with gr.Row():
                with gr.Column():
                    b_exp = gr.Dropdown(choices, value=None, label="Experiment",
                                        allow_custom_value=True)
                    b_folder = gr.Textbox(label="Folder of songs (inside the data folder)",
                                          placeholder="e.g. songs/")
                    b_singers = gr.Dropdown([], multiselect=True, label="Target singers",
                                            allow_custom_value=True)
                    with gr.Row():
                        b_key = gr.Slider(-24, 24, value=0, step=1, label="Key shift (semitones)")
                        b_auto = gr.Checkbox(False, label="Autoshift to each singer's range")
                    with gr.Row():
                        b_steps = gr.Number(None, precision=0, minimum=1, label="Sampler steps")
                        b_f0 = gr.Dropdown(extractors, value=None, label="F0 extractor")
                    b_out = gr.Textbox("converted", label="Output folder (inside the models folder)")
                    with gr.Row():
                        b_go = gr.Button("Convert all", variant="primary")
                        b_stop = gr.Button("Cancel")
                with gr.Column():
                    b_job = gr.Number(None, label="Job", interactive=False, precision=0)
                    b_status = gr.Textbox(label="Status", interactive=False)
                    b_rows = gr.Dataframe(headers=["file", "result"], label="Outputs",
                                          interactive=False)
        with gr.Tab("Train"):
            with gr.Row():
                with gr.Column():
                    t_project = gr.Textbox(label="Project name (a folder in the models folder)")
                    t_dataset = gr.Textbox(label="Dataset folder, singer/song/take.wav "
                                                 "(inside the data folder)")
                    t_config = gr.Textbox(label="... or an experiment config file (inside the data or "
                                                 "models folder)")
                    with gr.Row():
                        t_steps = gr.Number(None, precision=0, minimum=1,
                                            label="Max steps (empty: the config's)")
                        t_resume = gr.Checkbox(True, label="Resume from the newest checkpoint")
                    with gr.Row():
                        t_stage1 = gr.Button("1. Stage 1: features")
                        t_teacher = gr.Button("2. Train the teacher")
                        t_student = gr.Button("3. Distil the student")
                    t_stop = gr.Button("Stop", variant="stop")
                with gr.Column():
                    t_job = gr.Number(None, label="Job", interactive=False, precision=0)
                    t_status = gr.Textbox(label="Status", interactive=False)
                    t_tb = gr.Textbox(label="TensorBoard", interactive=False)
                    t_loss = gr.LinePlot(x="step", y="loss", label="Training loss")
                    t_log = gr.Textbox(label="Log", lines=10, max_lines=10, interactive=False,
                                       autoscroll=True)
        with gr.Tab("Models"):
            m_refresh = gr.Button("Refresh")
            m_table = gr.Dataframe(ui.models_table(), headers=MODELS_HEADERS, label="Experiments",
                                   interactive=False, wrap=True)
        with gr.Accordion("Jobs", open=False):
            j_table = gr.Dataframe(ui.jobs_table(), headers=JOBS_HEADERS, interactive=False)
        timer = gr.Timer(TIMER_SECONDS)

        c_exp.change(on_experiment(False), c_exp, [c_singer, c_steps, c_f0],
                     api_name="experiment_info")
        b_exp.change(on_experiment(True), b_exp, [b_singers, b_steps, b_f0],
                     api_visibility="private")
        c_go.click(on_convert, [song, c_exp, c_singer, c_key, c_auto, c_steps, c_f0, c_index,
                                c_protect],
                   [c_job, c_status, c_out, c_file, c_rtf, c_plot], api_name="convert",
                   concurrency_limit=None)
        b_go.click(on_batch, [b_exp, b_folder, b_singers, b_key, b_auto, b_steps, b_f0, b_out],
                   [b_job, b_status, b_rows], api_name="batch", concurrency_limit=None)
        for button, stage in ((t_stage1, "stage1"), (t_teacher, "teacher"), (t_student, "student")):
            button.click(on_train(stage), [t_project, t_dataset, t_config, t_resume, t_steps],
                         [t_job, t_status, t_tb], api_name=f"train_{stage}")
        c_stop.click(on_cancel, c_job, c_status, api_name="cancel", concurrency_limit=None)
        b_stop.click(on_cancel, b_job, b_status, api_visibility="private", concurrency_limit=None)
        t_stop.click(on_cancel, t_job, t_status, api_visibility="private", concurrency_limit=None)
        timer.tick(train_status, t_job, [t_status, t_log, t_loss], api_name="train_status",
                   concurrency_limit=None, show_progress="hidden")
        timer.tick(ui.jobs_table, None, j_table, api_name="jobs", concurrency_limit=None,
                   show_progress="hidden")
        m_refresh.click(refresh_models, None, [m_table, c_exp, b_exp], api_name="models")
        app.load(refresh_models, None, [m_table, c_exp, b_exp], api_visibility="private")
    return app


def launch(ui: WebUI, host: str = "127.0.0.1", port: int = 7860, max_upload_mb: float = 200.0,
           block: bool = True):
    """Serve the UI on ``host:port`` (no share link, analytics off); uploads above
    ``max_upload_mb`` MB are refused. ``block`` False returns the running app at once (tests)."""
    app = build_app(ui)
    app.queue(default_concurrency_limit=1)
    app.launch(server_name=host, server_port=port, share=False, inbrowser=False,
               max_file_size=int(max_upload_mb * 1024 * 1024), prevent_thread_lock=not block,
               show_error=True, ssr_mode=False, mcp_server=False, quiet=True)
    return app
