"""The chunk and scan forms of the heads of ``matrix`` and ``delta`` layers (docs/schedules.md), as
generated helpers of the ``torch`` and ``jax`` targets: ``head_form(kind, parts, q, s, form, size)``,
which ``state_heads`` (``backends/head_code.py``) calls for a group of heads in a form other than
the recurrent one. They follow ``ir.forms`` (the reference the exactness tests run), arranged for
speed: everything that does not depend on the state at a chunk's start is computed for all chunks
at once (batched matrix products over ``[batch, chunks, size, ...]``), and the loop over chunks
only carries the start states (for a matrix head one elementwise update per chunk, for a delta
head the chunk's written vectors U and the next start from them: two products per chunk).
"""

TORCH = '''
def head_form(kind, parts, q, s, form, size):
    """A group of matrix or delta heads over whole sequences in the chunk or scan form: parts (the
    operands) [batch, time, heads, n], q the queries or None, s the start state [batch, heads,
    keys, values]. Returns what the heads emit [batch, time, heads, n] and their last state."""
    batch, time, heads = parts[0].shape[:3]
    s = s.reshape(batch * heads, *s.shape[2:])
    chunked = form == "chunk"
    if chunked:  # blocks of whole chunks: their batched products stay in cache
        run, block = matrix_head_chunk if kind == "matrix" else delta_head_chunk, chunk_block(time, size)
    else:
        run, block = matrix_head_scan if kind == "matrix" else delta_head_scan, SCAN_SEGMENT
    emitted = None
    for start in range(0, time, block):
        cut = [None if x is None else heads_first(x[:, start:start + block]) for x in (*parts, q)]
        out, s = run(*cut, s, size) if chunked else run(*cut, s)
        if emitted is None:
            emitted = out.new_empty(batch, time, heads, out.shape[-1])
        emitted[:, start:start + block] = out.reshape(batch, heads, -1, out.shape[-1]).transpose(1, 2)
    return emitted, s.reshape(batch, heads, *s.shape[1:])


def heads_first(x):
    """[batch, time, heads, n] -> [batch * heads, time, n] (a copy: the forms multiply head by head)."""
    return x.transpose(1, 2).reshape(-1, x.shape[1], x.shape[-1])


# The scan forms run in segments of this many steps, each from the state the one before left: a
# scan keeps every step's state of its segment (not of the whole sequence), in 2 log2(256) rounds.
SCAN_SEGMENT = 256


def chunk_block(time, size):
    """The steps of the chunks computed at once: whole chunks, about 256 steps (on a CPU, all the
    chunks of 16384 steps at once ran 2.5 times slower than in blocks of 256: the batched
    products of a block stay in the caches)."""
    return size * max(1, min(256, time) // size)


def masked_gains(d):
    """For chunks of decays d [..., size, n]: G [..., size, size, n], G[t, j] the product of the
    decays of steps j+1..t (1 on the diagonal, 0 above it), cumulative products down each column
    from the chunk's start (never a quotient: decays may be 0), and g [..., size, n], g_t the
    product of those of steps 1..t."""
    size = d.shape[-2]
    later = torch.ones(size, size, dtype=torch.bool, device=d.device).tril(-1)[..., None]
    upper = torch.ones(size, size, dtype=torch.bool, device=d.device).triu(1)[..., None]
    gains = torch.where(later, d[..., :, None, :], torch.ones_like(d)[..., :, None, :]).cumprod(dim=-3)
    return gains.masked_fill(upper, 0.0), d.cumprod(dim=-2)


def after(d):
    """The products of the decays after each step to the end (axis -2; 1 at the last step), as the
    chunk forms take them (chunk_decays)."""
    return chunk_decays(d, sub_chunk(d.shape[-2]))[1]


def matrix_head_chunk(d, k, v, q, s, size):
    """S_t = diag(d_t) S_{t-1} + k_t v_t^T from s by chunks (GLA / SSD's chunk form): in a chunk
    from S_0, S_t = g_t S_0 + sum_{j <= t} G[t, j] k_j v_j^T, so q_t^T S_t = (q_t g_t)^T S_0 +
    sum_j P[t, j] v_j (chunk_scores), and the next chunk starts from g_C S_0 + sum_j (G[C, j] k_j)
    v_j^T. Only the start states S_0 follow one chunk after the other. Emits q_t^T S_t (or S_t row
    by row without q)."""
    time = k.shape[1]
    d, k, v = chunks(d, size, 1.0), chunks(k, size), chunks(v, size)  # [batch, chunks, size, n]
    sub = sub_chunk(size)
    g, following, ahead, behind, whole = chunk_decays(d, sub)
    written = (following * k).transpose(-1, -2) @ v  # each chunk's own part of the next start
    starts = []
    for c in range(k.shape[1]):
        starts.append(s)
        s = torch.addcmul(written[:, c], g[:, c, -1, :, None], s)
    starts = torch.stack(starts, dim=1)
    if q is None:
        gains, _ = masked_gains(d)
        local = torch.einsum("bctji,bcjv->bctiv", gains * k[:, :, None], v)
        out = (g[..., None] * starts[:, :, None] + local).flatten(-2)
    else:
        q = chunks(q, size)
        if d.shape[-1] == 1:
            scores = (q @ k.transpose(-1, -2)) * masked_gains(d)[0][..., 0]
        else:
            scores = chunk_scores(*(x.unflatten(-2, (-1, sub)) for x in (q, k, d)), ahead, behind, whole)
        out = torch.baddbmm((q * g).flatten(0, 1) @ starts.flatten(0, 1), scores.flatten(0, 1), v.flatten(0, 1))
    return out.reshape(k.shape[0], -1, out.shape[-1])[:, :time], s


def sub_chunk(size):
    """The steps of the sub-chunks of GLA's secondary chunking: the largest divisor of size up to 16
    (the scores inside a sub-chunk take a pass per step, those across sub-chunks a pass per
    sub-chunk: with sub-chunks of 8 instead, the form at C = 64 ran 1.2 times slower)."""
    return max(n for n in range(1, min(16, size) + 1) if size % n == 0)


def running_products(d):
    """Along axis -2 (a few steps): the products of d through each step, and those after each step
    (1 at the last), one step at a time (never a quotient: decays may be 0; nothing written in
    place, for autograd)."""
    steps = d.unbind(-2)
    through, following = [steps[0]], [torch.ones_like(steps[-1])]
    for x in steps[1:]:
        through.append(through[-1] * x)
    for x in steps[:0:-1]:
        following.append(following[-1] * x)
    return torch.stack(through, dim=-2), torch.stack(following[::-1], dim=-2)


def chunk_decays(d, sub):
    """For chunks of decays d [..., size, n] cut into sub-chunks of sub steps: the products of the
    decays from the chunk's start through each step (g) and after each step to the chunk's end
    ([..., size, n]); within each sub-chunk, the same two ([..., m, sub, n]: ahead, behind) and each
    sub-chunk's whole product ([..., m, n]). The chunk's products are those of its sub-chunks
    times the sub-chunks' whole products before or after them: products over a few steps each."""
    ahead, behind = running_products(d.unflatten(-2, (-1, sub)))
    whole = ahead[..., -1, :]
    through, after_whole = running_products(whole)
    before_whole = torch.cat([torch.ones_like(whole[..., :1, :]), through[..., :-1, :]], dim=-2)
    g = (ahead * before_whole[..., None, :]).flatten(-3, -2)
    return g, (behind * after_whole[..., None, :]).flatten(-3, -2), ahead, behind, whole


def chunk_scores(q, k, d, ahead, behind, whole):
    """P[t, j] = sum_i q_ti G[t, j, i] k_ji for chunks cut into m sub-chunks ([..., m, sub, n],
    with chunk_decays' products within them; 0 for j > t), G[t, j] the products of the decays of
    steps j+1..t: GLA's secondary chunking with products only. Inside a sub-chunk, by diagonals
    (diagonal_scores); across two, G factors into the decays from t's sub-chunk's start to t
    (ahead), those of the whole sub-chunks between (between) and those after j to the end of j's
    sub-chunk (behind): one batched product of every row of sub-chunks against the keys of all
    sub-chunks, each scaled by what lies between it and that row (0 from the row on)."""
    *lead, m, sub, rows = d.shape
    whole_gains, _ = masked_gains(whole)  # [..., m, m, rows]: the whole sub-chunks J+1..I
    between = torch.cat([torch.zeros_like(whole_gains[..., :1, :, :]), whole_gains[..., :-1, :, :]], dim=-3)
    keys = (between[..., None, :] * (k * behind)[..., None, :, :, :]).reshape(*lead, m, m * sub, rows)
    scores = (q * ahead) @ keys.transpose(-1, -2)  # [..., m, sub, size]: row I of sub-chunks, all j
    blocks = scores.view(*lead, m, sub, m, sub).diagonal(dim1=-4, dim2=-2)  # [..., sub, sub, m]
    blocks.add_(diagonal_scores(q, k, d).movedim(-3, -1))
    return scores.reshape(*lead, m * sub, m * sub)


def diagonal_scores(q, k, d):
    """P[t, j] = sum_i q_ti G[t, j, i] k_ji inside blocks [..., sub, n] (0 for j > t), one diagonal
    j = t - o after the other: q_t G[t, t - o] = (q_t G[t, t - o + 1]) d_{t - o + 1}, a product
    per step from t back (never a quotient), without forming G."""
    sub = d.shape[-2]
    scores = q.new_zeros(*q.shape[:-1], sub)
    reads = q
    for o in range(sub):
        if o:
            reads = reads[..., 1:, :] * d[..., 1:sub - o + 1, :]
        scores.diagonal(-o, -2, -1).copy_((reads * k[..., :sub - o, :]).sum(-1))
    return scores


def delta_head_chunk(alpha, beta, k, v, q, s, size):
    """The delta rule from s by chunks, through the WY / UT representation: in a chunk from S_0,
    with G[t, j] the product of the alphas of steps j+1..t and g_t = G[t, 0], the written vectors
    u_t = beta_t (v_t - alpha_t S_{t-1}^T k_t) are U = T V - T diag(g) K S_0, T = (I + L)^-1 diag(beta),
    L[t, j] = beta_t G[t, j] k_t.k_j (j < t) (one triangular solve per chunk for T V and T diag(g) K);
    S_t = g_t S_0 + sum_{j <= t} G[t, j] k_j u_j^T, so the next start is g_C S_0 + K^T diag(G[C, :]) U:
    the loop over chunks computes U from S_0 and the next start from U (two size x keys x values
    products per chunk, not the keys x keys transition of the chunk: keys^2 values), and
    q_t^T S_t = g_t q_t^T S_0 + ((Q K^T) * G) U. Emits q_t^T S_t (or S_t row by row without q)."""
    time = k.shape[1]
    a, b = chunks(alpha, size, 1.0), chunks(beta, size)
    k, v = chunks(k, size), chunks(v, size)
    gains, g = masked_gains(a)
    gains, g = gains[..., 0], g[..., 0]
    later = torch.ones(size, size, dtype=torch.bool, device=k.device).tril(-1)
    lower = torch.where(later, b * gains * (k @ k.transpose(-1, -2)), torch.zeros_like(gains))
    eye = torch.eye(size, dtype=k.dtype, device=k.device)
    solved = torch.linalg.solve_triangular(eye + lower, b * torch.cat([v, g[..., None] * k], dim=-1), upper=False,
                                           unitriangular=True)
    written_v, written_k = solved[..., :v.shape[-1]], solved[..., v.shape[-1]:]  # T V, T diag(g) K
    last = (gains[:, :, -1, :, None] * k).transpose(-1, -2)  # K^T diag(G[C, :])
    starts, written = [], []
    for c in range(k.shape[1]):
        starts.append(s)
        written.append(torch.baddbmm(written_v[:, c], written_k[:, c], s, alpha=-1))
        s = torch.baddbmm(g[:, c, -1, None, None] * s, last[:, c], written[-1])
    starts, u = torch.stack(starts, dim=1), torch.stack(written, dim=1)
    if q is None:
        states = g[..., None, None] * starts[:, :, None] + torch.einsum("bctj,bcjk,bcjv->bctkv", gains, k, u)
        out = states.flatten(-2)
    else:
        q = chunks(q, size)
        out = ((q @ k.transpose(-1, -2)) * gains) @ u + g[..., None] * (q @ starts)
    return out.flatten(1, 2)[:, :time], s


def matrix_head_scan(d, k, v, q, s):
    """S_t = diag(d_t) S_{t-1} + k_t v_t^T from s: the associative scan of (d_t, k_t v_t^T),
    elementwise (a decay scales its row, kept as a column: the decays' products take time x keys
    numbers, not time x keys x values); every S_t is formed (time x keys x values numbers), as
    every read q_t^T S_t needs its own."""
    a = d[..., None]
    b = k[..., :, None] * v[..., None, :]
    b = torch.cat([torch.addcmul(b[:, :1], a[:, :1], s[:, None]), b[:, 1:]], dim=1)
    states = associative_scan(gated_combine, (a, b))[1]
    return read_or_flat(states, q), states[:, -1]


def delta_head_scan(alpha, beta, k, v, q, s):
    """The delta rule from s: the associative scan of (alpha_t (I - beta_t k_t k_t^T), beta_t k_t v_t^T);
    each combine is a product of keys x keys matrices (keys^3)."""
    eye = torch.eye(k.shape[-1], dtype=k.dtype, device=k.device)
    a = alpha[..., None] * (eye - beta[..., None] * k[..., :, None] * k[..., None, :])
    b = beta[..., None] * k[..., :, None] * v[..., None, :]
    b = torch.cat([b[:, :1] + a[:, :1] @ s[:, None], b[:, 1:]], dim=1)
    states = associative_scan(matrix_combine, (a, b))[1]
    return read_or_flat(states, q), states[:, -1]


def read_or_flat(states, q):
    """q_t^T S_t at every step, or S_t row by row where there is no query."""
    return states.flatten(-2) if q is None else (q[..., None, :] @ states)[..., 0, :]
'''

JAX = '''
def head_form(kind, parts, q, s, form, size):
    """A group of matrix or delta heads over whole sequences in the chunk or scan form: parts (the
    operands) [batch, time, heads, n], q the queries or None, s the start state [batch, heads,
    keys, values]. Returns what the heads emit [batch, time, heads, n] and their last state."""
    batch, time, heads = parts[0].shape[:3]
    s = s.reshape(batch * heads, *s.shape[2:])
    width = s.shape[-1] if q is not None else s.shape[-2] * s.shape[-1]
    if form == "chunk":
        run = matrix_head_chunk if kind == "matrix" else delta_head_chunk
        emitted, s = in_blocks(lambda x, s: run(*x, s, size), [*parts, q], s, chunk_block(time, size), width)
    else:  # in segments: a scan keeps every step's state of its segment
        run = matrix_head_scan if kind == "matrix" else delta_head_scan
        emitted, s = in_blocks(lambda x, s: run(*x, s), [*parts, q], s, SCAN_SEGMENT, width)
    return emitted, s.reshape(batch, heads, *s.shape[1:])


# The scan forms run in segments of this many steps, each from the state the one before left: a
# scan keeps every step's state of its segment (not of the whole sequence), in 2 log2(256) rounds.
SCAN_SEGMENT = 256


def per_head(x):
    """[batch, time, heads, n] -> [batch * heads, time, n]."""
    return jnp.swapaxes(x, 1, 2).reshape(-1, x.shape[1], x.shape[-1])


def heads_back(x, batch):
    """[batch * heads, time, n] -> [batch, time, heads, n]."""
    return jnp.swapaxes(x.reshape(batch, -1, *x.shape[1:]), 1, 2)


def in_blocks(run, operands, s, block, width):
    """run(operands per head, s) -> (what they emit per head, last s) over blocks of block steps
    (whole chunks, or a scan's segments), one block after the other from s, then the steps after
    the last whole block.
    Each block is cut out of the [batch, time, heads, n] operands and put per head on its own (a
    copy the size of a block, which stays in the caches: transposing whole sequences took about
    a quarter of the form's time on this CPU), and what it emits is written into the output in
    place."""
    batch, time, heads = operands[0].shape[:3]

    def one_block(start, length, s):
        cut = [None if x is None else per_head(jax.lax.dynamic_slice_in_dim(x, start, length, axis=1)) for x in operands]
        emitted, s = run(cut, s)
        return heads_back(emitted, batch), s

    def next_block(i, carry):
        emitted, s = one_block(i * block, block, carry[1])
        return jax.lax.dynamic_update_slice_in_dim(carry[0], emitted, i * block, axis=1), s

    out, whole = jnp.zeros((batch, time, heads, width), s.dtype), time - time % block
    if whole:
        out, s = jax.lax.fori_loop(0, time // block, next_block, (out, s))
    if whole < time:
        emitted, s = one_block(whole, time - whole, s)
        out = jax.lax.dynamic_update_slice_in_dim(out, emitted, whole, axis=1)
    return out, s


def chunk_block(time, size):
    """The steps of the chunks computed at once: whole chunks, about 128 steps (on this CPU, XLA
    ran every chunk of 4096 steps at once 1.2 to 3 times slower than in blocks, whose batched
    products stay in the caches; blocks of 128 ran the GLA-shaped form about 1.2 times faster
    than blocks of 256, and 512 slower)."""
    return size * max(1, min(128, time) // size)


def products(x, axis, reverse=False):
    """Cumulative products along axis from its start (from its end with reverse), in two levels:
    inside runs of up to 8 steps, then across the runs' totals. XLA's CPU computes a cumulative
    product over the whole axis at every step (n^2 / 2 products for n steps); never a quotient."""
    axis = axis % x.ndim
    n = x.shape[axis]
    run = max(r for r in range(1, min(8, n) + 1) if n % r == 0)
    if run in (1, n):
        return jax.lax.cumprod(x, axis, reverse=reverse)
    runs = jax.lax.cumprod(x.reshape(*x.shape[:axis], n // run, run, *x.shape[axis + 1:]), axis + 1, reverse=reverse)
    totals = products(jax.lax.index_in_dim(runs, 0 if reverse else run - 1, axis + 1), axis, reverse)
    ones = jnp.ones_like(jax.lax.index_in_dim(totals, 0, axis))
    if reverse:  # the products of the runs after each run (1 after the last)
        outside = jnp.concatenate([jax.lax.slice_in_dim(totals, 1, None, axis=axis), ones], axis=axis)
    else:  # of the runs before each run
        outside = jnp.concatenate([ones, jax.lax.slice_in_dim(totals, 0, -1, axis=axis)], axis=axis)
    return (runs * outside).reshape(x.shape)


def mm(x, y):
    return jnp.matmul(x, y, precision=HIGHEST)


def masked_gains(d):
    """For chunks of decays d [..., size, n]: G [..., size, size, n], G[t, j] the product of the
    decays of steps j+1..t (1 on the diagonal, 0 above it), cumulative products down each column
    from the chunk's start (never a quotient: decays may be 0), and g [..., size, n], g_t the
    product of those of steps 1..t."""
    size = d.shape[-2]
    later = np.tri(size, k=-1, dtype=bool)[..., None]
    upper = np.triu(np.ones((size, size), dtype=bool), 1)[..., None]
    gains = products(jnp.where(later, d[..., :, None, :], 1.0), axis=d.ndim - 2)
    return jnp.where(upper, 0.0, gains), products(d, axis=d.ndim - 2)


def after(d):
    """The products of the decays after each step to the end (axis -2; 1 at the last step)."""
    behind = products(d, axis=d.ndim - 2, reverse=True)
    return jnp.concatenate([behind[..., 1:, :], jnp.ones_like(behind[..., :1, :])], axis=-2)


def over_chunks(step, s, xs):
    """step(S, x_c) -> (the next S, y_c) one chunk after the other (axis 1 of each of xs) from s.
    Returns the y_c [batch, chunks, ...] and the last state."""
    s, ys = jax.lax.scan(step, s, tuple(jnp.moveaxis(x, 1, 0) for x in xs))
    return jax.tree_util.tree_map(lambda y: jnp.moveaxis(y, 0, 1), ys), s


def matrix_head_chunk(d, k, v, q, s, size):
    """S_t = diag(d_t) S_{t-1} + k_t v_t^T from s by chunks (GLA / SSD's chunk form): in a chunk
    from S_0, S_t = g_t S_0 + sum_{j <= t} G[t, j] k_j v_j^T, so q_t^T S_t = (q_t g_t)^T S_0 +
    sum_j P[t, j] v_j (chunk_scores), and the next chunk starts from g_C S_0 + sum_j (G[C, j] k_j)
    v_j^T. Only the start states S_0 follow one chunk after the other (a scan over the chunks).
    Emits q_t^T S_t (or S_t row by row without q)."""
    time = k.shape[1]
    d, k, v = chunks(d, size, 1.0), chunks(k, size), chunks(v, size)  # [batch, chunks, size, n]
    g = products(d, axis=2)
    written = mm(jnp.swapaxes(after(d) * k, -1, -2), v)  # each chunk's own part of the next start
    starts, s = over_chunks(lambda s, x: (x[0][..., None] * s + x[1], s), s, (g[:, :, -1], written))
    if q is None:
        gains, _ = masked_gains(d)
        local = jnp.einsum("bctji,bcjv->bctiv", gains * k[:, :, None], v, precision=HIGHEST)
        out = (g[..., None] * starts[:, :, None] + local).reshape(*local.shape[:3], -1)
    else:
        q = chunks(q, size)
        scores = chunk_scores(*(x.reshape(-1, *x.shape[2:]) for x in (q, k, d))).reshape(*q.shape[:2], size, size)
        out = mm(scores, v) + mm(q * g, starts)
    return out.reshape(out.shape[0], -1, out.shape[-1])[:, :time], s


def chunk_scores(q, k, d):
    """P[t, j] = sum_i q_ti G[t, j, i] k_ji for chunks ([batch, size, n]; 0 for j > t), G[t, j]
    the products of the decays of steps j+1..t: (Q K^T) * G for a scalar decay. For a decay per
    row, GLA's secondary chunking with products only, in sub-chunks of up to 8 steps: inside one,
    by diagonals (diagonal_scores); across two, G factors into the decays from t's sub-chunk's
    start to t, those of the whole sub-chunks between and those after j to the end of j's
    sub-chunk: one product per row of sub-chunks against those before it."""
    batch, size, rows = d.shape
    if rows == 1:
        gains, _ = masked_gains(d)
        return mm(q, jnp.swapaxes(k, -1, -2)) * gains[..., 0]
    sub = max(n for n in range(1, min(8, size) + 1) if size % n == 0)
    m = size // sub
    d, q, k = (x.reshape(batch, m, sub, x.shape[-1]) for x in (d, q, k))
    ahead = products(d, axis=2)
    reads, writes, whole = q * ahead, k * after(d), ahead[:, :, -1]
    within = diagonal_scores(q, k, d)
    rows_of_blocks = []
    for i in range(m):
        blocks = [within[:, i], jnp.zeros((batch, sub, (m - 1 - i) * sub), q.dtype)]
        if i:
            between = after(whole[:, :i])[:, :, None, :]  # the whole sub-chunks J+1..i-1, for each J < i
            earlier = (writes[:, :i] * between).reshape(batch, i * sub, rows)
            blocks.insert(0, mm(reads[:, i], jnp.swapaxes(earlier, -1, -2)))
        rows_of_blocks.append(jnp.concatenate(blocks, axis=-1))
    return jnp.concatenate(rows_of_blocks, axis=-2)


def diagonal_scores(q, k, d):
    """P[t, j] = sum_i q_ti G[t, j, i] k_ji inside blocks [..., sub, n] (0 for j > t), one diagonal
    j = t - o after the other: q_t G[t, t - o] = (q_t G[t, t - o + 1]) d_{t - o + 1}, a product
    per step from t back (never a quotient), without forming G."""
    sub = d.shape[-2]
    scores = jnp.zeros((*q.shape[:-1], sub), q.dtype)
    reads = q
    for o in range(sub):
        if o:
            reads = reads[..., 1:, :] * d[..., 1:sub - o + 1, :]
        diagonal = jnp.pad((reads * k[..., :sub - o, :]).sum(-1), [(0, 0)] * (q.ndim - 2) + [(o, 0)])
        scores = scores + diagonal[..., :, None] * np.eye(sub, k=-o, dtype=q.dtype)
    return scores


def delta_head_chunk(alpha, beta, k, v, q, s, size):
    """The delta rule from s by chunks, through the WY / UT representation: in a chunk from S_0,
    with G[t, j] the product of the alphas of steps j+1..t and g_t = G[t, 0], the written vectors
    u_t = beta_t (v_t - alpha_t S_{t-1}^T k_t) are U = T V - T diag(g) K S_0, T = (I + L)^-1 diag(beta),
    L[t, j] = beta_t G[t, j] k_t.k_j (j < t); S_t = g_t S_0 + sum_{j <= t} G[t, j] k_j u_j^T, so
    the next start is g_C S_0 + K^T diag(G[C, :]) U. T V and T diag(g) K are computed for all
    chunks at once; the scan over the chunks forms U from S_0 and the next start (two products
    per chunk); then q_t^T S_t = g_t q_t^T S_0 + ((Q K^T) * G) U. Emits q_t^T S_t (or S_t row by
    row without q)."""
    time = k.shape[1]
    a, b = chunks(alpha, size, 1.0), chunks(beta, size)[..., 0]
    k, v = chunks(k, size), chunks(v, size)
    gains, g = masked_gains(a)
    gains, g = gains[..., 0], g[..., 0]
    later = np.tri(size, k=-1, dtype=bool)
    lower = jnp.where(later, b[..., :, None] * gains * mm(k, jnp.swapaxes(k, -1, -2)), 0.0)
    t = unit_lower_inverse(jnp.eye(size, dtype=k.dtype) + lower) * b[..., None, :]
    written_v, written_k = mm(t, v), mm(t, g[..., None] * k)
    last = jnp.swapaxes(gains[:, :, -1, :, None] * k, -1, -2)  # K^T diag(G[C, :])

    def next_start(s, x):
        written_v, written_k, last, decay = x
        u = written_v - mm(written_k, s)
        return decay[:, None, None] * s + mm(last, u), (s, u)

    (starts, u), s = over_chunks(next_start, s, (written_v, written_k, last, g[:, :, -1]))
    if q is None:
        states = g[..., None, None] * starts[:, :, None] + jnp.einsum("bctj,bcjk,bcjv->bctkv", gains, k, u,
                                                                      precision=HIGHEST)
        out = states.reshape(*states.shape[:3], -1)
    else:
        q = chunks(q, size)
        out = mm(mm(q, jnp.swapaxes(k, -1, -2)) * gains, u) + g[..., None] * mm(q, starts)
    return out.reshape(out.shape[0], -1, out.shape[-1])[:, :time], s


def unit_lower_inverse(m):
    """(I + L)^-1 for unit lower triangular matrices [..., n, n] (L strictly lower), by halves,
    [[A, 0], [B, D]]^-1 = [[A^-1, 0], [-D^-1 B A^-1, D^-1]], down to blocks of up to 16 steps,
    whose inverse is the finite series (I - L)(I + L^2)(I + L^4)... (L^n = 0): products only, no
    division and no LAPACK solve (on this CPU its 64 x 64 solve cost more than the products)."""
    n = m.shape[-1]
    if n > 16:
        h = n // 2
        first, second = unit_lower_inverse(m[..., :h, :h]), unit_lower_inverse(m[..., h:, h:])
        corner = -mm(second, mm(m[..., h:, :h], first))
        top = jnp.concatenate([first, jnp.zeros((*m.shape[:-2], h, n - h), m.dtype)], axis=-1)
        return jnp.concatenate([top, jnp.concatenate([corner, second], axis=-1)], axis=-2)
    eye = np.eye(n, dtype=m.dtype)
    power = m - eye
    inverse = eye - power
    for _ in range(1, (n - 1).bit_length()):
        power = mm(power, power)
        inverse = mm(inverse, eye + power)
    return inverse


def matrix_head_scan(d, k, v, q, s):
    """S_t = diag(d_t) S_{t-1} + k_t v_t^T from s: jax.lax.associative_scan of (d_t, k_t v_t^T),
    elementwise (a decay scales its row, kept as a column: the decays' products take time x keys
    numbers, not time x keys x values); every S_t is formed (time x keys x values numbers), as
    every read q_t^T S_t needs its own."""
    a = d[..., None]
    b = k[..., :, None] * v[..., None, :]
    b = b.at[:, 0].add(a[:, 0] * s)
    states = jax.lax.associative_scan(gated_combine, (a, b), axis=1)[1]
    return read_or_flat(states, q), states[:, -1]


def delta_head_scan(alpha, beta, k, v, q, s):
    """The delta rule from s: jax.lax.associative_scan of (alpha_t (I - beta_t k_t k_t^T),
    beta_t k_t v_t^T); each combine is a product of keys x keys matrices (keys^3)."""
    eye = jnp.eye(k.shape[-1], dtype=k.dtype)
    a = alpha[..., None] * (eye - beta[..., None] * k[..., :, None] * k[..., None, :])
    b = beta[..., None] * k[..., :, None] * v[..., None, :]
    b = b.at[:, 0].add(mm(a[:, 0], s))
    states = jax.lax.associative_scan(matrix_combine, (a, b), axis=1)[1]
    return read_or_flat(states, q), states[:, -1]


def read_or_flat(states, q):
    """q_t^T S_t at every step, or S_t row by row where there is no query."""
    return states.reshape(*states.shape[:2], -1) if q is None else mm(q[..., None, :], states)[..., 0, :]
'''
