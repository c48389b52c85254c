"""The cells of training.ipynb, as data: the notebook's source of truth.

Edit here, then run ``python tools/build_notebook.py``; a test fails when the
committed notebook and this file disagree. "Cell N" is the N-th *code* cell:
users and the approved design refer to cells by number, so never insert a
code cell before Cell 35 without renumbering every reference (see CLAUDE.md).
Each code cell is a Colab form: ``# @title N. Name { display-mode: "form" }``
first, settings as ``# @param``, explanations as ``# @markdown``; the logic
lives in tested modules under ``utils/``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Cell", "CELLS", "FIXED_TITLES"]


@dataclass(frozen=True)
class Cell:
    """A code cell (with optional markdown shown above it), or a markdown-only cell when ``code`` is None."""

    code: str | None
    markdown: str | None = None
    tags: tuple[str, ...] = ()


# Titles that users, docs and the approved design refer to by number.
FIXED_TITLES = {
    13: "13. Initialize Model",
    32: "32. Run Training",
    33: "33. Checkpoint Recovery",
    34: "🔧 Optional: Load Model Weights from Checkpoint",
    35: "35. Extract Session Variables",
}

INTRO = """
# Train a GPT, lose the runtime, get everything back

This notebook trains a GPT language model with **checkpoints you can trust**: every save is atomic,
every checkpoint lists instantly with its metrics, a run resumes *exactly* where it stopped, and
Cell 34 loads trained weights back into the model with a clear report (or a clear error).

**Run it:** *Runtime → Run all*. On a GPU runtime the default preset is GPT-2 small (124M parameters);
on a CPU it is a tiny model that trains in a minute or two. Settings are in **Cell 3**.

| Cells | What happens |
|---|---|
| 1–7 | Set-up: code, runtime, parameters, Google Drive, device, checkpoint folder, seeds |
| 8–12 | Data: text, tokenizer, splits, model config, training settings and batches |
| 13–17 | Model: create it, inspect it, check it before training |
| 18–31 | Training set-up: optimizer, schedule, precision, memory, speed, resume, last checks |
| 32 | **Run Training** (checkpoints every epoch and every `SAVE_EVERY_STEPS` steps) |
| 33–35 | **Recovery**: metrics from checkpoints, load the weights, session variables |
| 36–37 | Look inside: compare checkpoints side by side, which layers changed |
| 38–42 | Use the model: generate text, evaluate, dashboard, export, summary |

**After a disconnect:** run Cells 1–13, then 33–35: the trained model is back (with `USE_DRIVE`, Cell 4
first copies the checkpoints back from Drive). To continue training, set `RESUME = "latest"` in Cell 3 and
run everything.
"""

CELLS: list[Cell] = [
    Cell(None, INTRO),
    # ---------------------------------------------------------------- set-up
    Cell(
        markdown="## Set-up",
        code="""
# @title 1. Get the code { display-mode: "form" }
# @markdown In Colab this clones the project (set `REPO_URL` to its git address) and installs its requirements.
# @markdown Where the project's `utils/` package is already here (a local or headless run), it does nothing.
REPO_URL = ""  # @param {type:"string"}
import os
import subprocess
import sys

if os.path.isdir("utils/notebook"):
    print(f"✅ Project code found in {os.getcwd()}: nothing to install")
elif not REPO_URL:
    raise RuntimeError("The project code is not here: set REPO_URL to the project's git URL (or upload it)")
else:
    subprocess.run(["git", "clone", "--depth", "1", REPO_URL, "project"], check=True)
    os.chdir("project")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", "requirements.txt"], check=True)
    print(f"✅ Cloned {REPO_URL} into {os.getcwd()} and installed its requirements")
""",
    ),
    Cell(
        code="""
# @title 2. Runtime and GPU check { display-mode: "form" }
from utils.notebook.runtime import runtime_report

runtime = runtime_report()
print("\\n".join(runtime.lines()))
""",
    ),
    Cell(
        markdown="""
### Parameters
Every setting of the run. Headless runs override them with papermill, e.g.
`papermill training.ipynb out.ipynb -p MODEL_PRESET tiny -p EPOCHS 3 -p CHECKPOINT_DIR /some/dir`.
""",
        tags=("parameters",),
        code="""
# @title 3. Parameters { display-mode: "form" }
# @markdown **Model and training.** `MODEL_PRESET = "auto"`: `gpt2` (124M) on a GPU, `tiny` on a CPU.
# @markdown `EPOCHS_THIS_SESSION` > 0 stops early (e.g. a Colab time limit) while the LR schedule still plans `EPOCHS`.
MODEL_PRESET = "auto"  # @param ["auto", "tiny", "small-cpu", "gpt2"]
EPOCHS = 10  # @param {type:"integer"}
EPOCHS_THIS_SESSION = 0  # @param {type:"integer"}
BATCH_SIZE = 8  # @param {type:"integer"}
LEARNING_RATE = 1e-3  # @param {type:"number"}
WEIGHT_DECAY = 0.1  # @param {type:"number"}
WARMUP_STEPS = 20  # @param {type:"integer"}
MIN_LR_RATIO = 0.1  # @param {type:"number"}
MAX_BATCHES_PER_EPOCH = 0  # @param {type:"integer"}
MIXED_PRECISION = "auto"  # @param ["auto", "off", "bf16", "fp16"]
DEVICE = "auto"  # @param ["auto", "cpu", "cuda"]
SEED = 1337  # @param {type:"integer"}
# @markdown **Data.** Empty `DATA_PATH`: the bundled Tiny Shakespeare. `TOKENIZER = "gpt2"` needs `tiktoken`.
DATA_PATH = ""  # @param {type:"string"}
TOKENIZER = "bytes"  # @param ["bytes", "gpt2"]
VAL_FRACTION = 0.1  # @param {type:"number"}
EVAL_BATCHES = 20  # @param {type:"integer"}
# @markdown **Start from.** `INIT_FROM`: `"scratch"` (the preset), a checkpoint file or folder (nanoGPT, Lightning,
# @markdown Hugging Face, this notebook's), or a Hugging Face hub name (`"gpt2"`, `"gpt2-medium"`) to fine-tune.
INIT_FROM = "scratch"  # @param {type:"string"}
# @markdown **Checkpoints.** `RESUME`: `"none"` (new run), `"latest"`, or a checkpoint path.
# @markdown `ASYNC_SAVE`: training waits only for a copy of the state to memory; a background thread writes the file.
# @markdown `MIRROR_DIR`: a second folder every checkpoint is copied to in the background (Cell 4 sets Drive's).
CHECKPOINT_DIR = "./checkpoints"  # @param {type:"string"}
OUTPUT_DIR = "./outputs"  # @param {type:"string"}
RESUME = "none"  # @param {type:"string"}
SAVE_EVERY_STEPS = 100  # @param {type:"integer"}
KEEP_BEST = 1  # @param {type:"integer"}
KEEP_LAST = 2  # @param {type:"integer"}
COMPILE = False  # @param {type:"boolean"}
ASYNC_SAVE = True  # @param {type:"boolean"}
MIRROR_DIR = ""  # @param {type:"string"}
""",
    ),
    Cell(
        code="""
# @title 4. Google Drive for checkpoints (optional) { display-mode: "form" }
# @markdown Colab wipes the VM's disk when the runtime disconnects. Tick `USE_DRIVE` to keep a copy on Drive:
# @markdown checkpoints are written to the fast local disk first (`CHECKPOINT_DIR`), then copied in the background
# @markdown to `DRIVE_FOLDER` (the mirror; only complete, verified copies appear there). Outputs go to Drive.
# @markdown **A disconnect** keeps every checkpoint already on Drive and loses the local disk; in the new runtime
# @markdown this cell copies the Drive checkpoints back, so `RESUME = "latest"` and Cells 33-35 work as before.
USE_DRIVE = False  # @param {type:"boolean"}
DRIVE_FOLDER = "MyDrive/gpt-checkpoints"  # @param {type:"string"}
from utils.notebook.durability import local_first
from utils.notebook.runtime import use_drive

drive_choice = use_drive(USE_DRIVE, CHECKPOINT_DIR, OUTPUT_DIR, DRIVE_FOLDER, mirror_dir=MIRROR_DIR)
CHECKPOINT_DIR, OUTPUT_DIR = drive_choice.checkpoint_dir, drive_choice.output_dir
print(drive_choice.message)
storage = local_first(CHECKPOINT_DIR, drive_choice.mirror_dir)  # a fresh runtime: copy the mirror back
CHECKPOINT_DIR, MIRROR_DIR = storage.checkpoint_dir, storage.mirror_dir or ""
print("\\n".join(storage.lines()))
""",
    ),
    Cell(
        code="""
# @title 5. Device and model preset { display-mode: "form" }
from utils.notebook.runtime import resolve_preset
from utils.training.precision import resolve_device

device = resolve_device(DEVICE)
preset, preset_reason = resolve_preset(MODEL_PRESET, device)
print(f"📍 Device: {device}")
print(f"🧠 Model preset: {preset} ({preset_reason})")
""",
    ),
    Cell(
        code="""
# @title 6. Checkpoint folder check { display-mode: "form" }
import os

from utils.notebook.durability import check_mirror_folder
from utils.notebook.folders import check_checkpoint_folder

folder_report = check_checkpoint_folder(CHECKPOINT_DIR, RESUME)
print("\\n".join(folder_report.lines()))
folder_report.raise_if_unusable()
mirror_report = check_mirror_folder(MIRROR_DIR)  # a small probe write measures the mirror's speed
print("\\n".join(mirror_report.lines()))
mirror_report.raise_if_unusable()
os.makedirs(OUTPUT_DIR, exist_ok=True)
""",
    ),
    Cell(
        code="""
# @title 7. Seeds { display-mode: "form" }
from utils.notebook.runtime import seed_everything

seeded = seed_everything(SEED)
print(f"🎲 Seeded {', '.join(seeded)} with SEED = {SEED}")
print("   Same SEED and settings: the same initial weights, batches and dropout, step for step.")
""",
    ),
    # ---------------------------------------------------------------- data
    Cell(
        markdown="## Data",
        code="""
# @title 8. Load the text { display-mode: "form" }
from utils.data import load_corpus
from utils.notebook.data_views import describe_corpus

text = load_corpus(DATA_PATH or None)
print("\\n".join(describe_corpus(text, DATA_PATH or "bundled Tiny Shakespeare excerpt")))
""",
    ),
    Cell(
        code="""
# @title 9. Tokenizer { display-mode: "form" }
from utils.data import get_tokenizer
from utils.notebook.data_views import roundtrip_check

tokenizer = get_tokenizer(TOKENIZER)
tokenizer_ok, tokenizer_lines = roundtrip_check(tokenizer, text)
print("\\n".join(tokenizer_lines))
""",
    ),
    Cell(
        code="""
# @title 10. Encode and split { display-mode: "form" }
from utils.data import split_tokens
from utils.notebook.data_views import describe_split

tokens = tokenizer.encode(text)
train_tokens, val_tokens = split_tokens(tokens, VAL_FRACTION)
print("\\n".join(describe_split(train_tokens, val_tokens)))
""",
    ),
    Cell(
        code="""
# @title 11. Model configuration { display-mode: "form" }
# @markdown With `INIT_FROM` set (Cell 3) the config comes from that checkpoint, not from the preset.
from utils.notebook.init_from import choose_initial_model
from utils.notebook.model_views import config_lines

init_choice = choose_initial_model(INIT_FROM, preset, tokenizer)
model_config = init_choice.config
print("\\n".join(init_choice.lines() + config_lines(model_config, init_choice.preset, tokenizer)))
""",
    ),
    Cell(
        code="""
# @title 12. Training settings and batches { display-mode: "form" }
# @markdown `train_config` holds Cell 3's training settings; every later cell and every checkpoint uses it.
from utils.data import EpochBatches, validation_batches
from utils.notebook.data_views import describe_batch
from utils.notebook.train_settings import train_config_from

train_config = train_config_from(globals(), device)
batch_size, block_size, seed = train_config.batch_size, model_config.block_size, train_config.seed
train_batches = EpochBatches(train_tokens, batch_size, block_size, seed, train_config.max_batches_per_epoch)
val_batches = validation_batches(val_tokens, batch_size, block_size, train_config.eval_batches)
print("\\n".join(describe_batch(train_batches, val_batches, tokenizer)))
""",
    ),
    # ---------------------------------------------------------------- model
    Cell(
        markdown="## Model",
        code="""
# @title 13. Initialize Model { display-mode: "form" }
# @markdown The preset's random weights, or `INIT_FROM`'s pretrained ones (Cell 11 chose the config).
from utils.notebook.init_from import build_initial_model

model, init_lines = build_initial_model(init_choice, device)
print("\\n".join(init_lines))
""",
    ),
    Cell(
        code="""
# @title 14. Model summary { display-mode: "form" }
from utils.notebook.model_views import parameter_table

print("\\n".join(parameter_table(model)))
""",
    ),
    Cell(
        code="""
# @title 15. Causality check { display-mode: "form" }
# @markdown A token must never see the future: changing the last token may not change earlier predictions.
from utils.notebook.checks import causality_check

print(causality_check(model).line())
""",
    ),
    Cell(
        code="""
# @title 16. Untrained loss check { display-mode: "form" }
# @markdown Before training the model guesses uniformly, so its loss should be close to ln(vocab_size).
from utils.notebook.checks import untrained_loss_check

untrained_check = untrained_loss_check(model, val_batches[0], pretrained=init_choice.path is not None)
untrained_loss = untrained_check.details["loss"]
print(untrained_check.line())
""",
    ),
    Cell(
        code="""
# @title 17. Untrained sample { display-mode: "form" }
# @markdown What the model writes before training; Cell 38 compares the trained model's text with it.
SAMPLE_PROMPT = "ROMEO:"  # @param {type:"string"}
from utils.notebook.inference import generate_text, printable

untrained_sample = generate_text(model, tokenizer, SAMPLE_PROMPT, max_new_tokens=120, seed=SEED)
print(printable(untrained_sample))
""",
    ),
    # ---------------------------------------------------------------- training set-up
    Cell(
        markdown="## Training set-up",
        code="""
# @title 18. Optimizer { display-mode: "form" }
from utils.notebook.model_views import optimizer_lines
from utils.training.optim import build_optimizer

optimizer = build_optimizer(model, train_config.learning_rate, train_config.weight_decay)
print("\\n".join(optimizer_lines(optimizer)))
""",
    ),
    Cell(
        code="""
# @title 19. Learning-rate schedule { display-mode: "form" }
from utils.notebook.model_views import schedule_preview
from utils.notebook.plots import plot_lr_schedule, show_png
from utils.training.optim import build_scheduler

warmup, total_steps = train_config.warmup_steps, train_config.epochs * len(train_batches)
scheduler = build_scheduler(optimizer, warmup, total_steps, train_config.min_lr_ratio)
lr_schedule = schedule_preview(scheduler, total_steps)
print(f"📈 Warmup over {warmup} steps to {max(lr_schedule):.2e}, cosine down to {lr_schedule[-1]:.2e}")
print(f"   {total_steps} steps planned ({train_config.epochs} epochs x {len(train_batches)} batches)")
show_png(plot_lr_schedule(lr_schedule, f"{OUTPUT_DIR}/lr_schedule.png", steps_per_epoch=len(train_batches)))
""",
    ),
    Cell(
        code="""
# @title 20. Mixed precision { display-mode: "form" }
from utils.notebook.model_views import precision_lines
from utils.training.precision import build_grad_scaler, resolve_precision

amp_dtype = resolve_precision(train_config.mixed_precision, device)
scaler = build_grad_scaler(train_config.mixed_precision, device)
print("\\n".join(precision_lines(amp_dtype, scaler, device)))
""",
    ),
    Cell(
        code="""
# @title 21. Memory estimate { display-mode: "form" }
from utils.notebook.planning import available_memory, estimate_memory

memory = estimate_memory(
    model,
    train_config.batch_size,
    available_memory(device),
    device=device,
    async_save=train_config.async_save,
)
print("\\n".join(memory.lines(str(device))))
""",
    ),
    Cell(
        code="""
# @title 22. Speed probe { display-mode: "form" }
# @markdown Times a few forward + backward passes (no optimizer step: the weights do not change).
from utils.notebook.planning import measure_throughput

throughput = measure_throughput(model, train_batches.batch(0, 0), amp_dtype=amp_dtype)
print("\\n".join(throughput.lines(len(train_batches))))
""",
    ),
    Cell(
        code="""
# @title 23. Training configuration and checkpoint policy { display-mode: "form" }
from utils.notebook.model_views import settings_table
from utils.notebook.planning import retention_lines

print("⚙️  train_config (Cell 12; the run uses it and every checkpoint stores it):")
print("\\n".join(settings_table(train_config)))
print("\\n" + "\\n".join(retention_lines(train_config.keep_best, train_config.keep_last)))
""",
    ),
    Cell(
        markdown="""
### Resume
`RESUME = "latest"` continues the newest checkpoint in `CHECKPOINT_DIR`: weights, optimizer, LR schedule,
grad scaler, random generators, data position, counters and history, so the run ends exactly as if it
had never stopped.
""",
        code="""
# @title 24. Resume source { display-mode: "form" }
from utils.notebook.recovery_view import resume_source

resume_path, resume_lines = resume_source(RESUME, CHECKPOINT_DIR)
print("\\n".join(resume_lines))
""",
    ),
    Cell(
        code="""
# @title 25. Restore training state { display-mode: "form" }
from utils.training.resume import restore_training_state

resume_state = None
if resume_path:
    resume_state = restore_training_state(resume_path, model, optimizer, scheduler, scaler)
print(resume_state.render() if resume_state else "🆕 Fresh start: nothing to restore (epoch 1, step 0)")
""",
    ),
    Cell(
        code="""
# @title 26. Training plan { display-mode: "form" }
from utils.notebook.durability import is_on_drive
from utils.notebook.planning import checkpoint_size_bytes, plan_training
from utils.notebook.save_plan import plan_saving

plan = plan_training(
    train_config,
    batches_per_epoch=len(train_batches),
    resume_state=resume_state,
    checkpoint_bytes=checkpoint_size_bytes(model),
    free_disk=folder_report.free_bytes,
    seconds_per_step=throughput.seconds_per_step,
)
save_plan = plan_saving(
    plan, async_save=train_config.async_save, snapshot_bytes=checkpoint_size_bytes(model),
    mirror_dir=train_config.mirror_dir, mirror_report=mirror_report, checkpoint_folder_report=folder_report,
    checkpoint_on_drive=is_on_drive(CHECKPOINT_DIR),
)  # fmt: skip
print("\\n".join(plan.lines() + save_plan.lines()))
""",
    ),
    Cell(
        markdown="### Last checks before training",
        code="""
# @title 27. Gradient check { display-mode: "form" }
# @markdown One forward + backward pass: every weight must get a finite gradient (no step is taken).
from utils.notebook.checks import gradient_check

print(gradient_check(model, train_batches.batch(0, 0)).line())
""",
    ),
    Cell(
        code="""
# @title 28. Overfit one batch { display-mode: "form" }
# @markdown A copy of the model trains on a single batch; a healthy model memorises it quickly.
from utils.notebook.checks import overfit_one_batch

print(overfit_one_batch(model, train_batches.batch(0, 0)).line())
""",
    ),
    Cell(
        code="""
# @title 29. Validation loss before training { display-mode: "form" }
import math

from utils.training.loop import evaluate

baseline_val_loss = evaluate(model, val_batches, device=device, amp_dtype=amp_dtype)
state, random_loss = ("resumed" if resume_state else init_choice.state), math.log(model_config.vocab_size)
print(f"📏 Validation loss of the {state} model: {baseline_val_loss:.4f} (random: {random_loss:.4f})")
""",
    ),
    Cell(
        code="""
# @title 30. Compile the model (optional) { display-mode: "form" }
from utils.notebook.model_views import maybe_compile

model, compile_message = maybe_compile(model, COMPILE, device)
print(compile_message)
""",
    ),
    Cell(
        code="""
# @title 31. Run manifest { display-mode: "form" }
# @markdown Writes every setting, the versions and the code commit next to the outputs, to reproduce this run.
from utils.notebook.export import settings_from, write_run_manifest

manifest_path = write_run_manifest(
    f"{OUTPUT_DIR}/run_manifest.json",
    settings_from(globals()),
    device=device,
    preset=preset,
    resume_from=resume_path,
)
print(f"📝 Run manifest: {manifest_path}")
""",
    ),
    # ---------------------------------------------------------------- training
    Cell(
        markdown="""
## Training
Checkpoints go to `CHECKPOINT_DIR` at every epoch end and every `SAVE_EVERY_STEPS` steps, atomically:
written in the background with `ASYNC_SAVE`, and copied to the mirror (Drive) with `USE_DRIVE` / `MIRROR_DIR`.
If the runtime dies, set `RESUME = "latest"` and run all cells again.
""",
        code="""
# @title 32. Run Training { display-mode: "form" }
from utils.notebook.reporting import training_summary
from utils.training.loop import train

run = train(
    model, optimizer, scheduler, train_batches, val_batches, train_config, CHECKPOINT_DIR,
    scaler=scaler, resume_state=resume_state, model_config=model_config,
)  # fmt: skip
history = run.history
print("\\n".join(training_summary(run)))
""",
    ),
    # ---------------------------------------------------------------- recovery
    Cell(
        markdown="""
## Recovery
Cell 33 rebuilds the training results from the checkpoints alone (no weights are loaded),
Cell 34 loads the chosen checkpoint's weights into `model`, Cell 35 sets the session variables.
They also work in a fresh runtime after Cells 1–13.
""",
        code="""
# @title 33. Checkpoint Recovery { display-mode: "form" }
# @markdown Leave `RECOVERY_DIR` empty to read `CHECKPOINT_DIR`; or point it at another run's folder.
RECOVERY_DIR = ""  # @param {type:"string"}
from utils.notebook.durability import wait_for_pending_saves
from utils.notebook.recovery_view import checkpoint_recovery

wait_for_pending_saves()  # a checkpoint still being written (Cell 32 interrupted) is complete first
results = checkpoint_recovery(RECOVERY_DIR or CHECKPOINT_DIR, OUTPUT_DIR)
""",
    ),
    Cell(
        code="""
# @title 🔧 Optional: Load Model Weights from Checkpoint { display-mode: "form" }
# @markdown Loads the checkpoint Cell 33 chose (else the best one) into `model`, then sets eval mode.
# @markdown To load another file, uncomment the `MANUAL_CHECKPOINT` line and edit its path (any file or
# @markdown folder Cell 33 lists: this notebook's, nanoGPT's `ckpt.pt`, Lightning, Hugging Face, DCP).
# @markdown `STRICT` off: load only the tensors that fit (transfer learning; `FREEZE_LOADED` freezes them).
# @markdown `PICKER` also shows a list of the checkpoints and a Load button under the panels (needs ipywidgets).
TRUST_PICKLE = False  # @param {type:"boolean"}
STRICT = True  # @param {type:"boolean"}
FREEZE_LOADED = False  # @param {type:"boolean"}
PICKER = False  # @param {type:"boolean"}
MANUAL_CHECKPOINT = None
# MANUAL_CHECKPOINT = "./checkpoints/checkpoint_epoch0009_step000009_20251122_065455.pt"
from utils.notebook.load_weights import load_weights_cell

load_options = dict(manual_path=MANUAL_CHECKPOINT, trust_pickle=TRUST_PICKLE)
load_options.update(strict=STRICT, freeze_loaded=FREEZE_LOADED)
if PICKER:  # the widget sets `load_report` now and after each Load click
    checkpoint_picker = load_weights_cell(globals(), **load_options, picker=True)
else:
    load_report = load_weights_cell(globals(), **load_options)
""",
    ),
    Cell(
        code="""
# @title 35. Extract Session Variables { display-mode: "form" }
# @markdown Sets `history`, `val_losses`, `best_epoch`, `loaded_checkpoint`, ... from Cell 33's `results`
# @markdown (or from the checkpoints) and always prints each one: new, unchanged or updated.
from utils.notebook.session import extract_session_variables

session_report = extract_session_variables(globals())
print("\\n".join(session_report.lines()))
""",
    ),
    # ---------------------------------------------------------------- look inside the checkpoints
    Cell(
        markdown="""
## Look inside the checkpoints
Cell 36 compares checkpoints on the same validation batches: loss, agreement with the first one, KL
divergence and a sample each. Cell 37 shows which layers changed: in every epoch (recorded during
training, so it survives deleted checkpoints) and between two files.
""",
        code="""
# @title 36. Compare checkpoints { display-mode: "form" }
# @markdown `CHECKPOINTS`: comma-separated `best`, `latest`, `earliest`, `all` or file names; the first is
# @markdown the reference for agreement and KL. `model` is not changed: each file loads into one scratch copy.
CHECKPOINTS = "best, latest, earliest"  # @param {type:"string"}
COMPARE_PROMPT = "ROMEO:"  # @param {type:"string"}
COMPARE_TOKENS = 100  # @param {type:"integer"}
from utils.notebook.analysis_view import compare_checkpoints_cell

comparison = compare_checkpoints_cell(
    globals(), CHECKPOINTS, prompt=COMPARE_PROMPT, max_new_tokens=COMPARE_TOKENS
)
""",
    ),
    Cell(
        code="""
# @title 37. Which layers changed { display-mode: "form" }
# @markdown Heatmap: how far each layer moved in each epoch, from the history in the checkpoints' records.
# @markdown Bars: the tensors that changed most from `REFERENCE` (a keyword or file name, as in Cell 36)
# @markdown to the checkpoint Cell 34 loaded.
REFERENCE = "earliest"  # @param {type:"string"}
TOP_TENSORS = 20  # @param {type:"integer"}
from utils.notebook.analysis_view import which_layers_cell

layers_png, layer_report = which_layers_cell(globals(), OUTPUT_DIR, reference=REFERENCE, top=TOP_TENSORS)
""",
    ),
    # ---------------------------------------------------------------- use the model
    Cell(
        markdown="## Use the trained model",
        code="""
# @title 38. Generate text { display-mode: "form" }
PROMPT = "ROMEO:"  # @param {type:"string"}
MAX_NEW_TOKENS = 300  # @param {type:"integer"}
TEMPERATURE = 0.8  # @param {type:"number"}
TOP_K = 40  # @param {type:"integer"}
from utils.notebook.inference import compare_samples, generate_text, printable

generated = generate_text(
    model, tokenizer, PROMPT, max_new_tokens=MAX_NEW_TOKENS, temperature=TEMPERATURE, top_k=TOP_K, seed=SEED
)
print(printable(generated))
print("\\n" + "\\n".join(compare_samples(generated, globals().get("untrained_sample"), PROMPT)))
""",
    ),
    Cell(
        code="""
# @title 39. Evaluate { display-mode: "form" }
from utils.notebook.inference import evaluate_session_model

evaluation = evaluate_session_model(globals())
print("\\n".join(evaluation.lines()))
""",
    ),
    Cell(
        code="""
# @title 40. Training dashboard { display-mode: "form" }
from utils.notebook.plots import show_png
from utils.notebook.reporting import build_dashboard

dashboard_png = build_dashboard(globals(), OUTPUT_DIR)
print(f"🖼️  Saved {dashboard_png}")
show_png(dashboard_png)
""",
    ),
    Cell(
        code="""
# @title 41. Export weights (safetensors, Hugging Face) { display-mode: "form" }
# @markdown `model.safetensors` (tied weights stored once) + `model.config.json`: load them anywhere without pickle.
# @markdown `huggingface/`: a GPT-2 folder for `transformers` (`GPT2LMHeadModel.from_pretrained`, `push_to_hub`).
from utils.notebook.export import export_hugging_face_lines, export_safetensors
from utils.notebook.planning import format_bytes

exported = export_safetensors(model, OUTPUT_DIR)
print(f"📦 {exported['weights']} ({format_bytes(exported['size_bytes'])}, {exported['tensors']} tensors)")
print(f"🧾 {exported['config']}")
print(f"{'✅' if exported['verified'] else '❌'} Read back into a fresh model: every tensor identical")
print("\\n".join(export_hugging_face_lines(model, f"{OUTPUT_DIR}/huggingface")))
""",
    ),
    Cell(
        code="""
# @title 42. Summary { display-mode: "form" }
from utils.notebook.reporting import final_summary

print("\\n".join(final_summary(CHECKPOINT_DIR, OUTPUT_DIR)))
""",
    ),
]
