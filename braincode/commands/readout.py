"""The token readouts of ``braincode fit --readout factorized|routing``.

::

    braincode fit --data ROOT --subject subj01 --model open_clip:tiny-vit@random --layer blocks.2 \\
        --readout routing --out OUT [--preset published|cpu] [--queries roi|voxel] [--epochs N]

The routing readout is the published transformer brain encoder (``--preset published``: 768/16/1024); ``--preset
cpu`` (256/8/512, with an input projection) is a smaller variant for CPUs; ``args.runs`` > 1 averages that many
runs (the paper ensembles runs; the maps show the first). Writes ``scores.csv``, ``summary.json``
and ``{lh,rh}_pred_test.npy`` as the ridge ``fit`` does, plus ``OUT/readout/`` (``config.json`` +
``model.safetensors``, read by ``braincode.persist.load``) and, for routing, ``OUT/routing_maps.png``. The
``r``/``r2`` columns are *validation* scores (the split held out for early stopping), ``r_test`` the test split's
when it has responses; ``summary.json`` says so and flags a run stopped while still improving.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from braincode.encoding.readouts import ReadoutEnsemble, RoutingReadout
from braincode.encoding.readouts_base import TokenReadout
from braincode.errors import ConfigError

log = logging.getLogger(__name__)


def build_readout(args: argparse.Namespace, num_prefix_tokens: int,
                  grid: tuple[int, int] | None = None) -> TokenReadout | ReadoutEnsemble:
    """The readout ``args`` ask for (:func:`~braincode.encoding.readouts_fit.make_readout`), on tokens with
    ``num_prefix_tokens`` prefix tokens and a patch ``grid`` (``None``: square)."""
    from braincode.encoding.readouts_fit import make_readout

    return make_readout(
        args.readout, num_prefix_tokens=num_prefix_tokens, grid=grid,
        preset=getattr(args, "preset", None) or "published", queries=args.queries,
        runs=getattr(args, "runs", None) or 1, random_state=args.seed, device=args.device,
        max_epochs=getattr(args, "epochs", None), batch_size=getattr(args, "batch_size", None),
        lr=getattr(args, "lr", None), d_model=args.d_model, n_heads=args.heads, d_ff=args.d_ff,
    )


def fit_tokens(args: argparse.Namespace) -> int:
    """Run ``braincode fit`` with a token readout (``args.readout`` is ``factorized`` or ``routing``)."""
    from braincode.data import load_subject
    from braincode.encoding.analysis_outputs import write_result
    from braincode.encoding.readouts_fit import fit_readout
    from braincode.encoding.routing_maps import routing_maps, save_overlays
    from braincode.features import FeatureStore, get_extractor

    layers = args.layer or []
    if len(layers) != 1 or not layers[0].startswith("blocks."):
        raise ConfigError(f"--readout {args.readout} reads the tokens of one block", expected="one --layer blocks.N",
                          found=str(layers or "none"), fix="pass e.g. --layer blocks.6")
    start = time.perf_counter()
    ds = load_subject(args.data, args.subject, format=getattr(args, "format", "auto"))
    store = FeatureStore(args.cache)
    stimuli = {split: ds[split].stimuli for split in ("train", "test")}
    out = Path(args.out)
    extractor = get_extractor(args.model, layers=layers, device=args.device)
    tokens = {split: extractor.extract(s, store=store)[layers[0]] for split, s in stimuli.items()}
    readout = build_readout(args, extractor.num_prefix_tokens, extractor.grid)
    result = fit_readout(readout, ds, tokens)
    readout.save(out / "readout")
    routing = readout.members_[0] if isinstance(readout, ReadoutEnsemble) else readout
    if isinstance(routing, RoutingReadout) and routing.queries != "voxel":
        maps = routing_maps(routing, tokens["test"][:8])
        face = [q for q in maps.labels if "FFA" in q or "faces" in q] or maps.labels[:4]
        save_overlays(maps, stimuli["test"], out / "routing_maps.png", queries=face[:4])
    run = result.diagnostics
    info = {"model": args.model, "layers": layers, "readout": run["readout"], "stopped_improving":
            run["stopped_improving"], "seconds": round(time.perf_counter() - start, 1)}
    written = write_result(result, ds, out, info)
    print(f"wrote {out}: {', '.join(written)}, readout/")
    print(f"mean r over {len(result.scores)} vertices: {result.scores['r'].mean():.3f} ({result.methods['r']})")
    if run["stopped_improving"]:
        print(f"warning: the readout stopped at its epoch limit while validation r was still improving; "
              f"raise --epochs (ran {run['epochs_run']})")
    return 0
