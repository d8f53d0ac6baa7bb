"""``braincode train-decoder``: train a ClipCap prefix decoder on a captioned bank's (embedding, caption) pairs.

::

    braincode train-decoder --bank BANK --out DECODER [--gpt2 LOCAL_GPT2_FOLDER] [--epochs 10]

Without ``--gpt2`` the language model is a small random-weight GPT-2 with a word tokenizer learnt from the bank's
captions (offline). The decoder is then used by ``braincode caption --method scuba --decoder DECODER``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from braincode.errors import DataFormatError


def _cmd_train_decoder(args: argparse.Namespace) -> int:
    from braincode.interpret.bank import load_bank
    from braincode.interpret.clipcap import PrefixDecoder

    bank = load_bank(args.bank)
    if bank.captions is None:
        raise DataFormatError("the bank has no captions to train on", path=args.bank,
                              fix="build it from an image folder with a captions.csv (columns image, caption)")
    keep = [i for i, c in enumerate(bank.captions) if c]
    embeddings, captions = bank.embeddings(keep), [bank.captions[i] for i in keep]
    if args.gpt2 is not None:
        decoder = PrefixDecoder.from_gpt2(args.gpt2, bank.dim, prefix_length=args.prefix_length,
                                          random_state=args.seed)
    else:
        decoder = PrefixDecoder.tiny(bank.dim, captions, prefix_length=args.prefix_length, n_layer=args.n_layer,
                                     n_embd=args.n_embd, n_head=args.n_head, random_state=args.seed)
    losses = decoder.fit(embeddings, captions, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         train_lm=not args.freeze_lm, random_state=args.seed, device=args.device)
    decoder.save(args.out)
    print(f"trained on {len(captions)} pairs: loss {losses[0]:.3f} -> {losses[-1]:.3f}; wrote {args.out}")
    return 0


def register(subparsers) -> None:
    """Add ``train-decoder`` to the ``braincode`` sub-commands."""
    p = subparsers.add_parser("train-decoder", help="train a ClipCap prefix decoder on a captioned bank")
    p.add_argument("--bank", type=Path, required=True, help="bank folder with captions (`braincode bank`)")
    p.add_argument("--out", type=Path, required=True, help="decoder folder to write")
    p.add_argument("--gpt2", type=Path, help="local GPT-2 folder (weights + tokenizer); default: tiny random GPT-2")
    p.add_argument("--prefix-length", type=int, default=10)
    p.add_argument("--n-layer", type=int, default=2, help="tiny GPT-2 only")
    p.add_argument("--n-embd", type=int, default=64, help="tiny GPT-2 only")
    p.add_argument("--n-head", type=int, default=2, help="tiny GPT-2 only")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-5, help="AdamW learning rate (ClipCap: 2e-5)")
    p.add_argument("--freeze-lm", action="store_true", help="train only the prefix MLP")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=_cmd_train_decoder)
