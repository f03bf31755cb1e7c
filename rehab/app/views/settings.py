"""Settings & about page: the model in use, the ONNX Runtime provider really active, threads, anonymisation."""

from __future__ import annotations

import os

import pandas as pd
import streamlit as st

from rehab.app import common

CONFIRM_KEY = "rehab.confirm_anonymize_off"


def _model_section(settings) -> None:
    st.subheader("Pose model")
    st.caption(f"Configured: {common.model_path_label(settings)}")
    model = common.get_model(settings)
    if model is None:
        return
    info = model.info
    size_mb = model.path.stat().st_size / 1e6 if model.path.is_file() else float("nan")
    rows = {
        "Name": info.name,
        "File": f"{model.path} ({size_mb:.1f} MB)",
        "Backbone": info.backbone,
        "Precision": info.precision,
        "Input size (w × h)": f"{info.input_size[0]} × {info.input_size[1]} px, {info.channel_order}",
        "Heatmaps (w × h)": f"{info.heatmap_size[0]} × {info.heatmap_size[1]} (stride {info.heatmap_stride:g})",
        "Joints": f"{info.num_joints}: {', '.join(info.joint_names)}",
        "Flip test": "yes" if info.flip_test else "no",
        "Exported": info.exported_at or "–",
        "Code version": info.code_version or "–",
        "Checkpoint SHA-256": info.source_sha256 or "–",
    }
    st.table(pd.DataFrame({"Value": list(rows.values())}, index=pd.Index(list(rows), name="Property")))
    left, right = st.columns(2)
    with left:
        st.markdown("**Evaluation metrics**")
        st.json(dict(info.metrics) or {"note": "the model carries no metrics"})
    with right:
        st.markdown("**Training data and recipe**")
        st.json(dict(info.training) or {"note": "the model carries no training summary"}, expanded=False)
    if info.variant:
        st.markdown("**Reduced-precision variant, measured against FP32**")
        st.json(dict(info.variant))
    _runtime_section(settings, model)


def _runtime_section(settings, model) -> None:
    import onnxruntime as ort

    st.subheader("ONNX Runtime")
    active = list(model.providers)
    options = model.session.get_session_options()
    threads = options.intra_op_num_threads
    st.markdown(f"- Provider actually running the model: **{active[0]}**"
                + (f" (fallbacks: {', '.join(active[1:])})" if len(active) > 1 else ""))
    st.markdown(f"- Providers this onnxruntime {ort.__version__} build offers: "
                f"{', '.join(ort.get_available_providers())}")
    st.markdown(f"- Intra-op threads: **{threads if threads > 0 else f'ONNX Runtime default ({os.cpu_count()} cores)'}**"
                f" (setting: {settings.threads or 'automatic'})")
    if active[0] == "CPUExecutionProvider" and any(p != "CPUExecutionProvider" for p in ort.get_available_providers()):
        st.caption("A GPU provider is installed but not in use: no usable GPU was found, or its libraries are "
                   "missing (the server log says which).")


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
    st.subheader("App")
    st.markdown(
        f"- Data folder (history database, recordings, analysed videos): `{settings.data_dir.resolve()}`\n"
        f"- Upload limit: {settings.max_upload_mb} MB per video\n"
        f"- Password: {'required' if settings.password_required else 'not set (the app only listens on localhost)'}\n"
        f"- Pipeline settings file: {settings.runtime_settings_path or 'built-in defaults'}")
    runtime = common.runtime_settings(settings)
    if runtime is not None:
        with st.expander("Pipeline settings in effect"):
            st.json(runtime.to_dict())


def render() -> None:
    settings = common.load_app_settings()
    st.title("Settings & about")
    _anonymize_section(settings)
    _model_section(settings)
    _app_section(settings)


# Streamlit runs a page file as "__main__"; importing it (e.g. in tests) renders nothing.
if __name__ == "__main__":
    render()
