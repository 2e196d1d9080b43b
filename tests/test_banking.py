"""The banked activation and result memories (`mars.contract.banking`, docs/banking.md).

* Word packing round-trips, and the host's input words are the HWC map G at a time.
* For every network of the test suite on every preset, the cycle model's count of word
  reads per payload (the gather reads one word per domain and cycle) equals the number of
  distinct words among the unpadded lanes of the golden decoder's address stream
  (`mars.sw.golden.decoder.decoder_walk`, written from the layer geometry alone), and the
  writer's pixel start addresses equal the mapper's HWC layout of each pooled position.
"""

from __future__ import annotations

import numpy as np
import pytest

from mars.config import PRESETS
from mars.contract.banking import Banking, BankingError
from mars.sw.golden import cycles
from mars.sw.golden.decoder import decoder_walk
from mars.sw.mapper import MappingError, map_network
from mars.tb.networks import NETWORKS, stable_seed
from mars.tb.scales import with_random_scales


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_pack_round_trips(preset):
    config = PRESETS[preset]
    bank, seed = Banking(config), stable_seed("pack", preset)
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 1 << config.act_bits, size=3 * bank.group + 1).tolist()
    words = bank.pack(values)
    assert len(words) == 4, f"seed {seed}"
    assert all(0 <= w < 1 << bank.word_bits for w in words)
    assert bank.unpack(words, len(values)) == values, f"seed {seed}"
    assert bank.unpack(words)[len(values):] == [0] * (4 * bank.group - len(values))
    # element e is field e % G of word e // G, field g at bits [g*Ab, (g+1)*Ab)
    e = len(values) - 1
    field = words[e // bank.group] >> (config.act_bits * (e % bank.group))
    assert field & config.act_max == values[e]


def test_input_words_and_refusals():
    config = PRESETS["tiny"]
    bank = Banking(config)
    image = np.arange(2 * 3 * 5).reshape(2, 3, 5) % 16
    assert bank.input_words(image) == bank.pack(image.reshape(-1))
    with pytest.raises(ValueError, match="exceeds an activation buffer"):
        bank.input_words(np.zeros(config.act_buffer_words + 1, dtype=int))
    with pytest.raises(ValueError, match=r"\[0, 15\]"):
        bank.pack([16])
    with pytest.raises(BankingError, match="rows_per_step"):
        Banking(config.replace(rows=48, rows_per_step=6, readout_bits=3))


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_word_reads_and_pixel_starts_against_the_golden_decoder(preset, name):
    seed = stable_seed("banking", preset, name)
    build, sparsity = NETWORKS[name]
    try:
        rng = np.random.default_rng(seed)
        network = build(PRESETS[preset], rng, sparsity)
        network = with_random_scales(network, rng)  # the hcim preset's scale factors
        mapping = map_network(network)
    except MappingError as error:
        # The ice40 preset's 64-word buffers hold only the mlp network (docs/board.md).
        if "act_buffer_words" not in str(error):
            raise
        pytest.skip(f"{name} does not map on {preset}: {error}")
    config = mapping.config
    G, D = config.rows_per_step, config.wordline_domains
    for phase in mapping.phases:
        plan = mapping.layers[phase.layer]
        g, packed = plan.node.geometry, plan.packed
        fetches = cycles._layer_fetches(g, config)
        for walk in phase.walks:
            info = cycles._walk_info(config, plan, walk, fetches)
            reads = np.ones((walk.pixels, walk.steps), dtype=np.int64)
            for d in range(D):
                cb = walk.block_set * D + d
                code = packed.index_codes[cb] if cb < packed.n_blocks else []
                trace = decoder_walk(g, code, config, steps=walk.steps)
                rows = slice(walk.row0 * g.out_w * walk.steps,
                             (walk.row0 + walk.rows) * g.out_w * walk.steps)
                for i, (addrs, pad) in enumerate(zip(trace.addrs[rows], trace.pad[rows])):
                    words = {int(a) // G for a, p in zip(addrs, pad) if not p}
                    p, s = divmod(i, walk.steps)
                    reads[p, s] = max(reads[p, s], len(words))
            got = np.ones_like(reads) if info.extra is None else \
                np.asarray(info.extra).reshape(reads.shape) + 1
            np.testing.assert_array_equal(got, reads, err_msg=f"seed {seed} {plan.name}")
            # the writer's start of each pixel that is written: the mapper's HWC layout
            word, k = walk.word, walk.word["pool_k"]
            starts = info.starts
            for p in range(walk.pixels):
                oy, ox = divmod(p, walk.out_w)
                px, py = ox // k, oy // k
                if px < word["pool_w"] and py < word["pool_h"]:
                    want = word["out_base"] + py * word["out_row_pitch"] + \
                        px * word["out_pitch"]
                    if starts is None:
                        assert want % G == 0, f"seed {seed} {plan.name}: unaligned start"
                    else:
                        assert starts[p] == want, f"seed {seed} {plan.name} pixel {p}"


def test_mapping_exposes_the_input_words_and_the_output_count():
    """What `mars run`, `mars flow` and `mars board run` write and read, via the mapping."""
    config, seed = PRESETS["tiny"], stable_seed("mapping-io")
    build, sparsity = NETWORKS["cnn"]
    mapping = map_network(build(config, np.random.default_rng(seed), sparsity))
    image = np.random.default_rng(seed).integers(0, 16, size=mapping.network.input_shape)
    words = mapping.input_words(image)
    assert Banking(config).unpack(words, image.size) == image.reshape(-1).tolist()
    assert mapping.n_outputs == int(np.prod(mapping.output_shape))
