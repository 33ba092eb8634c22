"""A portable inference graph of the Atomizer: ``torch.export`` programs and ONNX files.

What is exported is the *unfused* inference path: eval mode, no atom dropping, every
cross-attention through :func:`torch.nn.functional.scaled_dot_product_attention` over stored keys
and values (not the fused kernels of :mod:`atomizer.models.fused`, not the chunked path), with the
model's own weights and modules (:class:`InferenceGraph` wraps a trained model; it copies nothing).

The graph starts at the token parts. :meth:`Tokenizer.parts <atomizer.encoders.Tokenizer.parts>`
has no trainable weights; it reads band and scene metadata (Python objects: band tables, dates)
and de-duplicates coordinates (a shape that depends on the data), so it stays outside the graph:
:func:`graph_inputs` computes it for an :class:`~atomizer.atoms.AtomBatch` and names its tensors
(``S`` samples, ``N`` atoms; every size is dynamic):

- ``mask`` ``(S, N)`` bool: True for real atoms (padded batches of any size);
- a per-atom factor ``NAME`` ``(S, N, D)`` (``value``);
- a per-row factor: its table ``NAME`` ``(R, D)`` and each atom's row ``NAME_index`` ``(S, N)``
  (``spectral``: one row per band; ``position_x`` / ``position_y``: per unique x / y);
- a per-sample factor ``NAME`` ``(S, D)`` (``time``, ``location``, when the tokenizer has them).

The output is ``logits`` ``(S, num_classes)`` (or ``embedding`` ``(S, latent_dim)``).

    >>> inputs = graph_inputs(model, collate_atoms(atom_sets))          # doctest: +SKIP
    >>> program = export_program(model, inputs)                           # doctest: +SKIP
    >>> program.module()(inputs)                                          # doctest: +SKIP
    >>> export_onnx(program, "atomizer.onnx")                             # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from atomizer.atoms.batch import AtomBatch
from atomizer.encoders import TokenParts
from atomizer.errors import AtomizerError
from atomizer.models.perceiver import DenseAtomSource

#: Suffix of the input holding each atom's row of a per-row factor's table.
INDEX_SUFFIX = "_index"
Output = Literal["logits", "embedding"]


class ExportError(AtomizerError):
    """A model cannot be exported (not an Atomizer, or an operator the exporter refuses)."""


def padded_sdpa(q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
    """:func:`~atomizer.models.attention.key_padding_sdpa` without data-dependent branches.

    Keys where ``mask (S, K)`` is False are ignored; a sample with no real atom gets a zero output
    (it attends to its first, padded key, then is zeroed), as in eager mode.
    """
    empty = ~mask.any(dim=1)
    first = torch.arange(mask.shape[1], device=mask.device) == 0
    usable = mask | (empty[:, None] & first[None, :])
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=usable[:, None, None, :])
    return out.masked_fill(empty[:, None, None, None], 0.0)


def _check_model(model: nn.Module) -> None:
    from atomizer.models.atomizer_model import AtomizerModel

    if not isinstance(model, AtomizerModel):
        raise ExportError(
            f"only the Atomizer's inference graph is exported, not a {type(model).__name__}; "
            "export an atomizer model (atomizer, atomizer-tiny, atomizer-paper)"
        )


class InferenceGraph(nn.Module):
    """The Atomizer from token parts to logits (or embedding): the unfused inference path.

    The same numbers as ``model.eval()(batch)`` up to float rounding; the wrapped model's modules
    run as they are, with the cross-attentions through :func:`padded_sdpa`.
    """

    def __init__(self, model: nn.Module, *, output: Output = "logits") -> None:
        super().__init__()
        _check_model(model)
        if output not in ("logits", "embedding"):
            raise ExportError(f"output must be 'logits' or 'embedding', not {output!r}")
        self.model = model
        self.output = output

    def forward(self, parts: dict[str, Tensor]) -> Tensor:
        model = self.model
        token_parts = token_parts_of(parts, model.tokenizer.factor_dims)
        from atomizer.models.atomizer_model import factors_from_parts

        embeddings = model.projection.embed(factors_from_parts(token_parts))
        source = DenseAtomSource(embeddings, token_parts.mask)
        core = model.core
        latents = core.latents.unsqueeze(0).expand(token_parts.mask.shape[0], -1, -1)
        for i in range(core.num_blocks):
            block = core.block(i)
            k, v = block.cross.split_heads(source.kv(block.cross.to_kv))
            latents = block.cross(latents, lambda q, k=k, v=v: padded_sdpa(q, k, v, source.mask))
            for layer in block.layers:
                latents = layer(latents)
        embedding = core.norm(core.pool(latents))
        return embedding if self.output == "embedding" else core.head(embedding)


def graph_inputs(model: nn.Module, batch: AtomBatch) -> dict[str, Tensor]:
    """The graph's inputs for ``batch``: the model's token parts, named (see the module doc)."""
    _check_model(model)
    with torch.no_grad():
        parts = model.tokenizer.parts(batch)
    inputs = {"mask": parts.mask}
    for name in parts.dims:  # token order
        if name in parts.per_row:
            inputs[name], inputs[name + INDEX_SUFFIX] = parts.per_row[name]
        elif name in parts.per_atom:
            inputs[name] = parts.per_atom[name]
        else:
            inputs[name] = parts.per_sample[name]
    return inputs


def token_parts_of(inputs: Mapping[str, Tensor], factor_dims: Mapping[str, int]) -> TokenParts:
    """The :class:`TokenParts` that :func:`graph_inputs` named (``factor_dims``: token order)."""
    per_atom, per_row, per_sample = {}, {}, {}
    for name in factor_dims:
        if name + INDEX_SUFFIX in inputs:
            per_row[name] = (inputs[name], inputs[name + INDEX_SUFFIX])
        elif inputs[name].dim() == 3:
            per_atom[name] = inputs[name]
        else:
            per_sample[name] = inputs[name]
    return TokenParts(inputs["mask"], dict(factor_dims), per_atom, per_row, per_sample)


def dynamic_shapes(inputs: Mapping[str, Tensor]) -> dict[str, dict[str, dict[int, Any]]]:
    """Every size of the inputs that varies with the data, as ``torch.export`` dims."""
    from torch.export import Dim

    samples, atoms = Dim("samples", min=1), Dim("atoms", min=1)
    shapes: dict[str, dict[int, Any]] = {}
    for name, tensor in inputs.items():
        if name == "mask" or name.endswith(INDEX_SUFFIX) or tensor.dim() == 3:
            shapes[name] = {0: samples, 1: atoms}
        elif name + INDEX_SUFFIX in inputs:  # a table: its own number of rows
            shapes[name] = {0: Dim(f"{name}_rows", min=1)}
        else:
            shapes[name] = {0: samples}
    return {"parts": shapes}


def _example(inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The example inputs, checked: every dynamic size must be at least 2 (or it is fixed)."""
    for name, spec in dynamic_shapes(inputs)["parts"].items():
        for axis in spec:
            if inputs[name].shape[axis] < 2:
                raise ExportError(
                    f"example input {name!r} has size {inputs[name].shape[axis]} along axis "
                    f"{axis}; export from a batch of at least 2 samples, 2 atoms, 2 bands and 2 "
                    "distinct x and y (sizes 0 and 1 would be fixed into the graph)"
                )
    return dict(inputs)


def export_program(
    model: nn.Module, inputs: Mapping[str, Tensor], *, output: Output = "logits"
) -> torch.export.ExportedProgram:
    """``torch.export`` of :class:`InferenceGraph` (``model`` is put in eval mode).

    ``inputs`` (:func:`graph_inputs` of an example batch) fix the dtypes and which parts exist;
    samples, atoms, bands and unique coordinates stay dynamic. Run it with
    ``program.module()(inputs)``; save it with :func:`torch.export.save`.
    """
    graph = InferenceGraph(model.eval(), output=output).eval()
    example = _example(inputs)
    with torch.no_grad():
        return torch.export.export(
            graph, (example,), dynamic_shapes=dynamic_shapes(example), strict=False
        )


def export_onnx(
    program: torch.export.ExportedProgram,
    path: str | Path,
    *,
    output: Output = "logits",
    opset: int = 18,
) -> Path:
    """The program of :func:`export_program` as an ONNX file at ``path``, written atomically.

    Converted by ``torch.onnx.export(program, dynamo=True)``; the dynamic sizes stay dynamic.
    Input names are those of :func:`graph_inputs`, the output is named ``output`` (give
    what :func:`export_program` was given). The file is checked with
    :func:`onnx.checker.check_model` before it replaces ``path``.
    """
    import onnx

    from atomizer.io import atomic_path

    args, _ = program.example_inputs
    path = Path(path)
    with atomic_path(path) as tmp:
        onnx_program = torch.onnx.export(
            program,
            dynamo=True,
            input_names=list(args[0]),
            output_names=[output],
            opset_version=opset,
            external_data=False,
            verbose=False,
        )
        onnx_program.save(str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)
    return path
