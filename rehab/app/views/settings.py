"""Settings & about page: which model, how accurate, which device runs it and why, where the data is kept.

Written for a therapist (rehab.app.about turns the model's metadata into sentences); the raw figures are in
a "Technical details" table for support.
"""

from __future__ import annotations

import os

import pandas as pd
import streamlit as st

from rehab import __version__
from rehab.app import about, common
from rehab.store import DB_NAME

CONFIRM_KEY = "rehab.confirm_anonymize_off"


def _joint_words(names) -> str:
    return ", ".join(n.replace("_", " ") for n in names)


def _model_section(settings) -> None:
    st.subheader("Pose model")
    st.caption(f"Configured: {common.model_path_label(settings)}")
    model = common.get_model(settings)
    if model is None:
        return
    info = model.info
    network = about.BACKBONE_WORDS.get(info.backbone, f"{info.backbone} network")
    article = "an" if network[:1].lower() in "aeiou" else "a"
    facts = [(f"**Model:** {info.name}, {article} {network} that finds {info.num_joints} body points "
              f"({_joint_words(info.joint_names)}).")]
    accuracy = about.accuracy(dict(info.metrics), dict(info.variant))
    facts.append(f"**How accurate:** {accuracy.sentence if accuracy else 'the model file records no accuracy figure.'}")
    trained = about.training_words(dict(info.training))
    if trained:
        facts.append(f"**Trained on:** {trained}.")
    facts.append(f"**Precision:** {about.PRECISION_WORDS.get(info.precision, info.precision)}.")
    checked = about.file_check(info.precision, dict(info.variant))
    if checked:
        facts.append(f"**This file:** {checked}")
    exported = about.readable_date(info.exported_at)
    version = about.clean_version(info.code_version)
    if exported or version:
        facts.append("**Exported:** " + ", ".join(filter(None, (exported, f"rehab {version}" if version else ""))) + ".")
    st.markdown("\n".join(f"- {fact}" for fact in facts))
    if accuracy is not None:
        st.metric("Joints placed correctly (PCK@0.2)", f"{accuracy.pck:.1f} %",
                  help="Per cent of arm and leg joints within a fifth of the torso's length of where a person "
                       "marked them" + (f", on {accuracy.images} test images" if accuracy.images else ""))
    _device_section(settings, model)
    _technical_details(model)


def _device_section(settings, model) -> None:
    st.subheader("Device")
    report = common.device_report(model)
    threads = model.session.get_session_options().intra_op_num_threads
    cores = os.cpu_count() or 1
    st.markdown(f"- **Runs on:** {report.device}, using {about.thread_words(threads, cores)} "
                f"(setting: {settings.threads or 'automatic'}).\n"
                f"- **Why:** {report.why}.")
    if report.gpu_unavailable:
        st.info("No GPU in use. The model gives the same results on the processor, only more slowly; the "
                "server log says so too when it loads the model.")


def _technical_details(model) -> None:
    import onnxruntime as ort

    info = model.info
    size_mb = model.path.stat().st_size / 1e6 if model.path.is_file() else float("nan")
    rows = [
        ("File", f"{model.path} ({size_mb:.1f} MB)"),
        ("Backbone", info.backbone),
        ("Precision", info.precision),
        ("Input size (w × h)", f"{info.input_size[0]} × {info.input_size[1]} px, {info.channel_order}"),
        ("Heatmaps (w × h)", f"{info.heatmap_size[0]} × {info.heatmap_size[1]} (stride {info.heatmap_stride:g})"),
        ("Joints", f"{info.num_joints}: {', '.join(info.joint_names)}"),
        ("Flip test", "yes" if info.flip_test else "no"),
        ("Exported at", info.exported_at or "–"),
        ("Code version", info.code_version or "–"),
        ("Checkpoint SHA-256", info.source_sha256 or "–"),
        ("Provider running the model", ", ".join(model.providers)),
        (f"Providers of onnxruntime {ort.__version__}", ", ".join(ort.get_available_providers())),
    ]
    for section, data in (("metrics", info.metrics), ("training", info.training), ("export check", info.variant)):
        rows += [(f"{section}: {key}", value) for key, value in about.flat_items(dict(data))]
    with st.expander("Technical details (for support)"):
        st.table(pd.DataFrame({"Value": [v for _, v in rows]}, index=pd.Index([k for k, _ in rows], name="Property")))


def _anonymize_section(settings) -> None:
    st.subheader("Face anonymisation")
    enabled = common.anonymize_enabled(settings)
    if enabled:
        st.success("Face blurring is **on**: every frame shown, recorded or exported has the face pixelated.")
        if not st.session_state.get(CONFIRM_KEY):
            if st.button("Turn face blurring off…"):
                st.session_state[CONFIRM_KEY] = True
                st.rerun()
        else:
            st.warning("With face blurring off, faces are visible on screen **and in every recording and "
                       "exported video** of this browser session. Only do this with the patient's consent.")
            yes, no = st.columns(2)
            if yes.button("Yes, turn face blurring off", type="primary"):
                st.session_state[common.ANONYMIZE_KEY] = False
                st.session_state[CONFIRM_KEY] = False
                st.rerun()
            if no.button("Cancel, keep faces blurred"):
                st.session_state[CONFIRM_KEY] = False
                st.rerun()
    else:
        st.error("Face blurring is **off** for this browser session: faces are visible in the video and in "
                 "recordings.")
        if st.button("Turn face blurring back on", type="primary"):
            st.session_state[common.ANONYMIZE_KEY] = True
            st.rerun()
    st.caption(f"The default for new sessions is {'on' if settings.anonymize_default else 'OFF'} "
               "(app setting `anonymize_default`).")


def _app_section(settings) -> None:
    st.subheader("Where your data is stored")
    folder = settings.data_dir.resolve()
    st.markdown(
        f"Everything the app keeps stays on this computer, in one folder: `{folder}`\n"
        f"- `{DB_NAME}`: the history (patients by pseudonym only, sessions, repetitions)\n"
        "- `recordings/`: live recordings (face-blurred video, frames table, summary)\n"
        "- `videos/`: results of analysed uploads (the uploaded file itself is not kept)\n\n"
        "Change it with `rehab app --data-dir FOLDER` or the REHAB_APP_DATA_DIR variable.")
    st.subheader("App")
    st.markdown(
        f"- Upload limit: {settings.max_upload_mb} MB per video\n"
        f"- Password: {'required' if settings.password_required else 'not set (the app only listens on localhost)'}\n"
        f"- Pipeline settings file: {settings.runtime_settings_path or 'built-in defaults'}\n"
        f"- rehab version: {about.clean_version(__version__)}")
    runtime = common.runtime_settings(settings)
    if runtime is not None:
        with st.expander("Pipeline settings in effect"):
            rows = about.flat_items(runtime.to_dict())
            st.table(pd.DataFrame({"Value": [v for _, v in rows]}, index=pd.Index([k for k, _ in rows], name="Setting")))


def render() -> None:
    settings = common.load_app_settings()
    st.title("Settings & about")
    _anonymize_section(settings)
    _model_section(settings)
    _app_section(settings)


# Streamlit runs a page file as "__main__"; importing it (e.g. in tests) renders nothing.
if __name__ == "__main__":
    render()
