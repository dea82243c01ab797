"""The Triton kernels the ``triton`` target writes into ``kernels.py``, as source text, and the
launchers that call them (docs/target-triton.md).

Every kernel keeps a state layer's state in registers and runs time in its own loop: one program
per batch element and block of channels (a gated or diagonal layer), per batch element (a constant
matrix transition couples all its units), or per batch element, head and block of values (a
matrix or delta head: the columns of ``S`` are independent, the keys are all in one program since
a read sums over them). The chunked kernels (``*_chunk``) follow the chunk plan: a chunk's steps
at once (an associative scan of the gates, or ``tl.dot`` products of the chunk's keys, queries and
values), the state passed from chunk to chunk in the kernel's loop; no form divides by a product
of decays, which can be 0. ``solve_chunk_cg`` is Mesa's chunk form: a solve over a matrix head's
states, accumulated by chunks and applied by conjugate-gradient steps without being formed. The
gated kernels read their operands either from tensors or, fused, from columns of the layer's
input (``operand_reads``).

Block sizes come from the layer's sizes (a power of two at least as large, capped; ``tl.dot``
needs blocks of at least 16). ``tl.dot`` runs in IEEE precision: TF32 would break the bounds the
compiler states for float32.

The launchers take tensors ``[batch, time, n]`` (heads: ``[batch, time, heads, n]``)
in the model's dtype and return new tensors; ``model.py`` gathers the operands and scatters the
results. Each entry of :data:`KERNELS` is one kernel with its launcher; :data:`PRELUDE` comes
first.
"""

from __future__ import annotations

PRELUDE = '''
import torch
import triton
import triton.language as tl


def block(n, cap, least=1):
    """The block size for n channels: the power of two at least n (and least), at most cap."""
    return max(least, min(triton.next_power_of_2(max(n, 1)), cap))


def operand_reads(operand, x, batch, time, width):
    """How a gated kernel reads one operand (the drive v or the gate a), as (tensor, batch stride,
    time stride, columns, scale, bias): its value at batch b, step t and channel c is
    tensor[b * batch stride + t * time stride + columns[c]] * scale[c] + bias[c]. The operand is a
    tensor [batch, time, width], a constant [width] (strides 0), or (columns, scale, bias): those
    columns of x [batch, time, d], scaled and shifted as the kernel loads them (fused: the
    layer's gather, scale and bias are never written to memory as a tensor of their own)."""
    if isinstance(operand, tuple):
        columns, scale, bias = operand
        x = x.contiguous()
        columns = torch.as_tensor(columns, device=x.device, dtype=torch.int64)
        scale = x.new_ones(width) if scale is None else scale.to(x).expand(width).contiguous()
        bias = x.new_zeros(width) if bias is None else bias.to(x).expand(width).contiguous()
        return x, time * x.shape[-1], x.shape[-1], columns, scale, bias
    columns = torch.arange(width, device=operand.device)
    ones, zeros = operand.new_ones(width), operand.new_zeros(width)
    if operand.dim() == 1:
        return operand.contiguous(), 0, 0, columns, ones, zeros
    return operand.expand(batch, time, width).contiguous(), time * width, width, columns, ones, zeros
'''

GATED_RECURRENT = '''
@triton.jit
def gated_recurrent_kernel(v_ptr, v_batch, v_time, v_columns, v_scale, v_bias,
                           a_ptr, a_batch, a_time, a_columns, a_scale, a_bias,
                           init_ptr, out_ptr, time, width, BLOCK: tl.constexpr):
    """h_t = a_t * h_{t-1} + v_t from h_0 = init, elementwise: one program per batch element and
    BLOCK channels, h in registers, time in the loop; v and a read as operand_reads says (their
    columns, scales and biases loaded once, before the loop)."""
    b = tl.program_id(0).to(tl.int64)
    channels = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    inside = channels < width
    v_rows = v_ptr + b * v_batch + tl.load(v_columns + channels, mask=inside, other=0)
    a_rows = a_ptr + b * a_batch + tl.load(a_columns + channels, mask=inside, other=0)
    v_scaled, v_shift = tl.load(v_scale + channels, mask=inside, other=0.0), tl.load(v_bias + channels, mask=inside, other=0.0)
    a_scaled, a_shift = tl.load(a_scale + channels, mask=inside, other=0.0), tl.load(a_bias + channels, mask=inside, other=0.0)
    h = tl.load(init_ptr + channels, mask=inside, other=0.0)
    rows = b * time * width + channels
    for t in range(time):
        a = tl.load(a_rows + t * a_time, mask=inside, other=0.0) * a_scaled + a_shift
        h = a * h + (tl.load(v_rows + t * v_time, mask=inside, other=0.0) * v_scaled + v_shift)
        tl.store(out_ptr + rows + t * width, h, mask=inside)


def gated_recurrence(v, a, init, x=None):
    """h_t = a_t * h_{t-1} + v_t from h_0 = init: v and a each a tensor [batch, time, n], a constant
    [n] (a) or (columns, scale, bias) of x [batch, time, d] (operand_reads: fused)."""
    tensor = x if isinstance(v, tuple) else v
    batch, time, width = tensor.shape[0], tensor.shape[1], len(init)
    out = tensor.new_empty(batch, time, width)
    size = block(width, 1024)
    grid = (batch, triton.cdiv(width, size))
    gated_recurrent_kernel[grid](*operand_reads(v, x, batch, time, width), *operand_reads(a, x, batch, time, width),
                                 init.contiguous(), out, time, width, BLOCK=size)
    return out


scaled_recurrence = gated_recurrence  # a constant diagonal transition: the same kernel, a_time 0
'''

GATED_CHUNK = '''
@triton.jit
def gated_combine(a_first, b_first, a_then, b_then):
    """(a_then, b_then) after (a_first, b_first): h -> a_then (a_first h + b_first) + b_then."""
    return a_then * a_first, a_then * b_first + b_then


@triton.jit
def gated_chunk_kernel(v_ptr, v_batch, v_time, v_columns, v_scale, v_bias,
                       a_ptr, a_batch, a_time, a_columns, a_scale, a_bias,
                       init_ptr, out_ptr, time, width, CHUNK: tl.constexpr, STEPS: tl.constexpr, BLOCK: tl.constexpr):
    """h_t = a_t * h_{t-1} + v_t from h_0 = init by chunks of CHUNK steps: in a chunk, the decays
    since its start and the states from zero by one associative scan of (a_t, v_t) (STEPS: CHUNK
    as a power of two, the rows past it a_t = 1, v_t = 0), then h_t = local_t + decay_t h_start;
    the chunk's last state starts the next one. v and a read as operand_reads says."""
    b = tl.program_id(0).to(tl.int64)
    channels = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    inside = channels < width
    steps = tl.arange(0, STEPS)
    v_columns = tl.load(v_columns + channels, mask=inside, other=0)
    a_columns = tl.load(a_columns + channels, mask=inside, other=0)
    v_scaled, v_shift = tl.load(v_scale + channels, mask=inside, other=0.0), tl.load(v_bias + channels, mask=inside, other=0.0)
    a_scaled, a_shift = tl.load(a_scale + channels, mask=inside, other=0.0), tl.load(a_bias + channels, mask=inside, other=0.0)
    h = tl.load(init_ptr + channels, mask=inside, other=0.0)
    for start in range(0, time, CHUNK):
        t = start + steps
        cells = ((steps < CHUNK) & (t < time))[:, None] & inside[None, :]
        a = tl.load(a_ptr + b * a_batch + t[:, None] * a_time + a_columns[None, :], mask=cells, other=0.0)
        a = tl.where(cells, a * a_scaled[None, :] + a_shift[None, :], 1.0)
        v = tl.load(v_ptr + b * v_batch + t[:, None] * v_time + v_columns[None, :], mask=cells, other=0.0)
        v = tl.where(cells, v * v_scaled[None, :] + v_shift[None, :], 0.0)
        decay, local = tl.associative_scan((a, v), 0, gated_combine)
        out = local + decay * h[None, :]
        tl.store(out_ptr + b * time * width + t[:, None] * width + channels[None, :], out, mask=cells)
        h = tl.sum(tl.where((steps == STEPS - 1)[:, None], out, 0.0), axis=0)


def gated_chunk(v, a, init, size, x=None):
    """gated_recurrence by chunks of size steps."""
    tensor = x if isinstance(v, tuple) else v
    batch, time, width = tensor.shape[0], tensor.shape[1], len(init)
    out = tensor.new_empty(batch, time, width)
    channels = block(width, 128)
    grid = (batch, triton.cdiv(width, channels))
    gated_chunk_kernel[grid](*operand_reads(v, x, batch, time, width), *operand_reads(a, x, batch, time, width),
                             init.contiguous(), out, time, width, CHUNK=size, STEPS=block(size, 1 << 16), BLOCK=channels)
    return out
'''

MATRIX_RECURRENT = '''
@triton.jit
def matrix_recurrent_kernel(v_ptr, A_ptr, init_ptr, out_ptr, time, width, BLOCK: tl.constexpr):
    """h_t = A h_{t-1} + v_t from h_0 = init: one program per batch element (A couples every unit),
    A and h in registers, time in the loop."""
    b = tl.program_id(0).to(tl.int64)
    units = tl.arange(0, BLOCK)
    inside = units < width
    A = tl.load(A_ptr + units[:, None] * width + units[None, :], mask=inside[:, None] & inside[None, :], other=0.0)
    h = tl.load(init_ptr + units, mask=inside, other=0.0)
    rows = b * time * width + units
    for t in range(time):
        h = tl.sum(A * h[None, :], axis=1) + tl.load(v_ptr + rows + t * width, mask=inside, other=0.0)
        tl.store(out_ptr + rows + t * width, h, mask=inside)


def matrix_recurrence(v, A, init):
    """h_t = A h_{t-1} + v_t from h_0 = init, v [batch, time, n], A [n, n]."""
    batch, time, width = v.shape
    v = v.contiguous()
    out = torch.empty_like(v)
    matrix_recurrent_kernel[(batch,)](v, A.contiguous(), init.contiguous(), out, time, width,
                                      BLOCK=block(width, 1 << 16))
    return out
'''

HEADS_RECURRENT = '''
@triton.jit
def heads_recurrent_kernel(d_ptr, beta_ptr, k_ptr, v_ptr, q_ptr, s_ptr, out_ptr, last_ptr, time, heads,
                           DELTA: tl.constexpr, DECAYS: tl.constexpr, KEYS: tl.constexpr, VALUES: tl.constexpr,
                           READS: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    """Matrix heads S_t = diag(d_t) S_{t-1} + k_t v_t^T (DECAYS 1: one decay, else one per key) or,
    with DELTA, delta heads S_t = S' + k_t (beta_t (v_t - S'^T k_t))^T, S' = d_t S_{t-1}. One
    program per batch element, head and BV values (the columns of S are independent), S [BK, BV]
    in registers from s, time in the loop; each step emits q_t^T S_t (READS) or S_t row by row.
    Operands [batch, time, heads, n], states [batch, heads, KEYS, VALUES]."""
    bh = tl.program_id(0).to(tl.int64)
    b, h = bh // heads, bh % heads
    keys = tl.arange(0, BK)
    values = tl.program_id(1) * BV + tl.arange(0, BV)
    key_in, value_in = keys < KEYS, values < VALUES
    cells = key_in[:, None] & value_in[None, :]
    square = keys[:, None] * VALUES + values[None, :]
    S = tl.load(s_ptr + bh * KEYS * VALUES + square, mask=cells, other=0.0)
    for t in range(time):
        row = (b * time + t) * heads + h
        if DECAYS == 1:
            S = tl.load(d_ptr + row) * S
        else:
            S = tl.load(d_ptr + row * KEYS + keys, mask=key_in, other=0.0)[:, None] * S
        k = tl.load(k_ptr + row * KEYS + keys, mask=key_in, other=0.0)
        v = tl.load(v_ptr + row * VALUES + values, mask=value_in, other=0.0)
        if DELTA:
            v = tl.load(beta_ptr + row) * (v - tl.sum(k[:, None] * S, axis=0))
        S = S + k[:, None] * v[None, :]
        if READS:
            q = tl.load(q_ptr + row * KEYS + keys, mask=key_in, other=0.0)
            tl.store(out_ptr + row * VALUES + values, tl.sum(q[:, None] * S, axis=0), mask=value_in)
        else:
            tl.store(out_ptr + row * KEYS * VALUES + square, S, mask=cells)
    tl.store(last_ptr + bh * KEYS * VALUES + square, S, mask=cells)


def heads_recurrence(kind, parts, q, s):
    """A group of matrix or delta heads (parts: the operands [batch, time, heads, n]: d, k, v or
    alpha, beta, k, v; q the queries or None; s the start state [batch, heads, keys, values]):
    (what they emit [batch, time, heads, n], the last state)."""
    delta = kind == "delta"
    d, beta, k, v = parts if delta else (parts[0], None, *parts[1:])
    batch, time, heads, keys = k.shape
    values = v.shape[-1]
    d, k, v = d.contiguous(), k.contiguous(), v.contiguous()
    emitted = v.new_empty(batch, time, heads, values if q is not None else keys * values)
    last = torch.empty_like(s)
    size = block(values, 64)
    grid = (batch * heads, triton.cdiv(values, size))
    heads_recurrent_kernel[grid](
        d, beta.contiguous() if delta else d, k, v, q.contiguous() if q is not None else k, s.contiguous(), emitted,
        last, time, heads, DELTA=delta, DECAYS=d.shape[-1], KEYS=keys, VALUES=values, READS=q is not None,
        BK=block(keys, 1 << 16), BV=size)
    return emitted, last
'''

MATRIX_HEADS_CHUNK = '''
@triton.jit
def matrix_heads_chunk_kernel(d_ptr, k_ptr, v_ptr, q_ptr, s_ptr, out_ptr, last_ptr, time, heads,
                              CHUNK: tl.constexpr, STEPS: tl.constexpr, DECAYS: tl.constexpr, KEYS: tl.constexpr,
                              VALUES: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    """Matrix heads with a query by chunks of CHUNK steps (GLA / SSD's chunk form): in a chunk from
    S_0, with G[t, j] the product of the decays of steps j+1..t (0 above the diagonal) and g_t that
    of steps 1..t, q_t^T S_t = (q_t g_t)^T S_0 + sum_j P[t, j] v_j, P[t, j] = sum_i q_ti G[t, j, i] k_ji
    (P = (Q K^T) * G for one decay), and the next chunk starts from g_C S_0 + (G[C, :] K)^T V.
    G is a cumulative product down each column from the chunk's start, never a quotient (decays
    may be 0). STEPS: CHUNK as a power of two, at least 16 for tl.dot; the rows past the chunk
    have d = 1 and k = v = q = 0, so they change nothing. One program per batch element, head and
    BV values."""
    bh = tl.program_id(0).to(tl.int64)
    b, h = bh // heads, bh % heads
    keys = tl.arange(0, BK)
    values = tl.program_id(1) * BV + tl.arange(0, BV)
    key_in, value_in = keys < KEYS, values < VALUES
    square = keys[:, None] * VALUES + values[None, :]
    cells = key_in[:, None] & value_in[None, :]
    S = tl.load(s_ptr + bh * KEYS * VALUES + square, mask=cells, other=0.0)
    steps = tl.arange(0, STEPS)
    later = steps[:, None] > steps[None, :]
    lower = steps[:, None] >= steps[None, :]
    last_step = steps == STEPS - 1
    for start in range(0, time, CHUNK):
        t = start + steps
        rows = (b * time + t) * heads + h
        real = (steps < CHUNK) & (t < time)
        by_key = real[:, None] & key_in[None, :]
        k = tl.load(k_ptr + rows[:, None] * KEYS + keys[None, :], mask=by_key, other=0.0)
        q = tl.load(q_ptr + rows[:, None] * KEYS + keys[None, :], mask=by_key, other=0.0)
        v = tl.load(v_ptr + rows[:, None] * VALUES + values[None, :], mask=real[:, None] & value_in[None, :], other=0.0)
        if DECAYS == 1:
            d = tl.load(d_ptr + rows, mask=real, other=1.0)
            G = tl.where(lower, tl.cumprod(tl.where(later, d[:, None], 1.0), axis=0), 0.0)
            g = tl.cumprod(d, axis=0)
            scores = tl.dot(q, tl.trans(k), input_precision="ieee") * G
            from_start = tl.dot(q * g[:, None], S, input_precision="ieee")
            G_last = tl.sum(tl.where(last_step[:, None], G, 0.0), axis=0)
            S = tl.sum(tl.where(last_step, g, 0.0), axis=0) * S + tl.dot(
                tl.trans(k * G_last[:, None]), v, input_precision="ieee")
        else:
            d = tl.load(d_ptr + rows[:, None] * KEYS + keys[None, :], mask=by_key, other=1.0)
            G = tl.where(lower[:, :, None], tl.cumprod(tl.where(later[:, :, None], d[:, None, :], 1.0), axis=0), 0.0)
            g = tl.cumprod(d, axis=0)
            scores = tl.sum(q[:, None, :] * G * k[None, :, :], axis=2)
            from_start = tl.dot(q * g, S, input_precision="ieee")
            G_last = tl.sum(tl.where(last_step[:, None, None], G, 0.0), axis=0)
            g_last = tl.sum(tl.where(last_step[:, None], g, 0.0), axis=0)
            S = g_last[:, None] * S + tl.dot(tl.trans(k * G_last), v, input_precision="ieee")
        out = tl.dot(scores, v, input_precision="ieee") + from_start
        tl.store(out_ptr + rows[:, None] * VALUES + values[None, :], out, mask=real[:, None] & value_in[None, :])
    tl.store(last_ptr + bh * KEYS * VALUES + square, S, mask=cells)


def matrix_heads_chunk(parts, q, s, size):
    """heads_recurrence of matrix heads with a query, by chunks of size steps."""
    d, k, v = (part.contiguous() for part in parts)
    batch, time, heads, keys = k.shape
    values = v.shape[-1]
    emitted = v.new_empty(batch, time, heads, values)
    last = torch.empty_like(s)
    width = block(values, 64, 16)
    grid = (batch * heads, triton.cdiv(values, width))
    matrix_heads_chunk_kernel[grid](
        d, k, v, q.contiguous(), s.contiguous(), emitted, last, time, heads, CHUNK=size,
        STEPS=block(size, 1 << 16, 16), DECAYS=d.shape[-1], KEYS=keys, VALUES=values,
        BK=block(keys, 1 << 16, 16), BV=width)
    return emitted, last
'''

DELTA_HEADS_CHUNK = '''
@triton.jit
def delta_heads_chunk_kernel(alpha_ptr, beta_ptr, k_ptr, v_ptr, q_ptr, s_ptr, out_ptr, last_ptr, time, heads,
                             CHUNK: tl.constexpr, STEPS: tl.constexpr, KEYS: tl.constexpr, VALUES: tl.constexpr,
                             BK: tl.constexpr, BV: tl.constexpr):
    """Delta heads with a query by chunks of CHUNK steps, through the WY / UT representation: in a
    chunk from S_0, with G[t, j] the product of the alphas of steps j+1..t and g_t = G[t, 0], the
    written vectors u_t = beta_t (v_t - alpha_t S_{t-1}^T k_t) are U = T V - T diag(g) K S_0 with
    T = (I + L)^-1 diag(beta), L[t, j] = beta_t G[t, j] k_t.k_j (j < t), by forward substitution
    (I + L is unit lower triangular: no division); then q_t^T S_t = g_t q_t^T S_0 + ((Q K^T) * G) U
    and the next chunk starts from g_C S_0 + (G[C, :] K)^T U. STEPS: CHUNK as a power of two, at
    least 16 (the rows past the chunk have alpha = 1 and beta = k = v = q = 0). One program per
    batch element, head and BV values."""
    bh = tl.program_id(0).to(tl.int64)
    b, h = bh // heads, bh % heads
    keys = tl.arange(0, BK)
    values = tl.program_id(1) * BV + tl.arange(0, BV)
    key_in, value_in = keys < KEYS, values < VALUES
    square = keys[:, None] * VALUES + values[None, :]
    cells = key_in[:, None] & value_in[None, :]
    S = tl.load(s_ptr + bh * KEYS * VALUES + square, mask=cells, other=0.0)
    steps = tl.arange(0, STEPS)
    later = steps[:, None] > steps[None, :]
    lower = steps[:, None] >= steps[None, :]
    last_step = steps == STEPS - 1
    for start in range(0, time, CHUNK):
        t = start + steps
        rows = (b * time + t) * heads + h
        real = (steps < CHUNK) & (t < time)
        by_key = real[:, None] & key_in[None, :]
        by_value = real[:, None] & value_in[None, :]
        k = tl.load(k_ptr + rows[:, None] * KEYS + keys[None, :], mask=by_key, other=0.0)
        q = tl.load(q_ptr + rows[:, None] * KEYS + keys[None, :], mask=by_key, other=0.0)
        v = tl.load(v_ptr + rows[:, None] * VALUES + values[None, :], mask=by_value, other=0.0)
        alpha = tl.load(alpha_ptr + rows, mask=real, other=1.0)
        beta = tl.load(beta_ptr + rows, mask=real, other=0.0)
        G = tl.where(lower, tl.cumprod(tl.where(later, alpha[:, None], 1.0), axis=0), 0.0)
        g = tl.cumprod(alpha, axis=0)
        L = tl.where(later, beta[:, None] * G * tl.dot(k, tl.trans(k), input_precision="ieee"), 0.0)
        T = tl.where(steps[:, None] == steps[None, :], beta[:, None], 0.0)
        for i in range(1, STEPS):  # row i of T from the rows above it, already final
            this = steps == i
            row = tl.sum(tl.where(this[:, None], L, 0.0), axis=0)
            T = tl.where(this[:, None], T - tl.sum(row[:, None] * T, axis=0)[None, :], T)
        U = tl.dot(T, v, input_precision="ieee") - tl.dot(
            tl.dot(T, k * g[:, None], input_precision="ieee"), S, input_precision="ieee")
        scores = tl.dot(q, tl.trans(k), input_precision="ieee") * G
        out = tl.dot(scores, U, input_precision="ieee") + g[:, None] * tl.dot(q, S, input_precision="ieee")
        tl.store(out_ptr + rows[:, None] * VALUES + values[None, :], out, mask=by_value)
        G_last = tl.sum(tl.where(last_step[:, None], G, 0.0), axis=0)
        S = tl.sum(tl.where(last_step, g, 0.0), axis=0) * S + tl.dot(
            tl.trans(k), G_last[:, None] * U, input_precision="ieee")
    tl.store(last_ptr + bh * KEYS * VALUES + square, S, mask=cells)


def delta_heads_chunk(parts, q, s, size):
    """heads_recurrence of delta heads with a query, by chunks of size steps."""
    alpha, beta, k, v = (part.contiguous() for part in parts)
    batch, time, heads, keys = k.shape
    values = v.shape[-1]
    emitted = v.new_empty(batch, time, heads, values)
    last = torch.empty_like(s)
    width = block(values, 64, 16)
    grid = (batch * heads, triton.cdiv(values, width))
    delta_heads_chunk_kernel[grid](
        alpha, beta, k, v, q.contiguous(), s.contiguous(), emitted, last, time, heads, CHUNK=size,
        STEPS=block(size, 1 << 16, 16), KEYS=keys, VALUES=values, BK=block(keys, 1 << 16, 16), BV=width)
    return emitted, last
'''

# kernel name -> source (kernel and launcher), in the order kernels.py lists them
SOLVE_CHUNK = '''
@triton.jit
def solve_chunk_kernel(d_ptr, k_ptr, v_ptr, q_ptr, shift_ptr, out_ptr, time, n,
                       ITERATIONS: tl.constexpr, CHUNK: tl.constexpr, STEPS: tl.constexpr, BN: tl.constexpr):
    """Mesa's chunk form with ITERATIONS conjugate-gradient steps: x_t after those steps from 0 on
    (S_t + diag(shift)) x = q_t, S_t = d_t S_{t-1} + k_t v_t^T from 0 (n x n, one decay per
    step), a chunk's steps at once. S_t is never formed: in a chunk from S_0, with G[t, j] the
    product of the decays of steps j+1..t and g_t that of steps 1..t (cumulative products, never a
    quotient), each step applies it as S_t p = g_t S_0 p + sum_j G[t, j] k_j (v_j . p), that is
    g (P S_0^T) + (G * (P V^T)) K for the chunk's rows P; the next chunk starts from
    g_C S_0 + (G[C, :] K)^T V. STEPS: CHUNK as a power of two, at least 16 for tl.dot; its rows
    past the chunk have d = 1 and k = v = q = 0, so they change nothing. One program per batch
    element, S_0 in registers."""
    b = tl.program_id(0).to(tl.int64)
    units = tl.arange(0, BN)
    inside = units < n
    shift = tl.load(shift_ptr + units, mask=inside, other=0.0)
    S = tl.zeros((BN, BN), dtype=shift.dtype)
    steps = tl.arange(0, STEPS)
    later = steps[:, None] > steps[None, :]
    lower = steps[:, None] >= steps[None, :]
    last_step = steps == STEPS - 1
    for start in range(0, time, CHUNK):
        t = start + steps
        real = (steps < CHUNK) & (t < time)
        cells = real[:, None] & inside[None, :]
        offsets = (b * time + t)[:, None] * n + units[None, :]
        k = tl.load(k_ptr + offsets, mask=cells, other=0.0)
        v = tl.load(v_ptr + offsets, mask=cells, other=0.0)
        r = tl.load(q_ptr + offsets, mask=cells, other=0.0)
        d = tl.load(d_ptr + b * time + t, mask=real, other=1.0)
        G = tl.where(lower, tl.cumprod(tl.where(later, d[:, None], 1.0), axis=0), 0.0)
        g = tl.cumprod(d, axis=0)
        x = tl.zeros_like(r)
        p = r
        rr = tl.sum(r * r, axis=1)
        for _ in tl.static_range(ITERATIONS):
            sp = g[:, None] * tl.dot(p, tl.trans(S), input_precision="ieee") + tl.dot(
                G * tl.dot(p, tl.trans(v), input_precision="ieee"), k, input_precision="ieee")
            ap = sp + shift[None, :] * p
            moving = rr > 0  # a residual of 0 stops (no division by 0)
            alpha = tl.where(moving, rr / tl.where(moving, tl.sum(p * ap, axis=1), 1.0), 0.0)
            x += alpha[:, None] * p
            r -= alpha[:, None] * ap
            following = tl.sum(r * r, axis=1)
            p = r + tl.where(moving, following / tl.where(moving, rr, 1.0), 0.0)[:, None] * p
            rr = following
        tl.store(out_ptr + offsets, x, mask=cells)
        G_last = tl.sum(tl.where(last_step[:, None], G, 0.0), axis=0)
        S = tl.sum(tl.where(last_step, g, 0.0), axis=0) * S + tl.dot(tl.trans(k * G_last[:, None]), v, input_precision="ieee")


def solve_chunk_cg(d, k, v, q, shift, steps, size):
    """Mesa's chunk form (steps conjugate-gradient steps, one decay per step): d [batch, time, 1],
    k, v, q [batch, time, n], shift [n]; returns x [batch, time, n]."""
    batch, time, n = q.shape
    out = torch.empty_like(q)
    solve_chunk_kernel[(batch,)](d.contiguous(), k.contiguous(), v.contiguous(), q.contiguous(), shift.contiguous(),
                                 out, time, n, ITERATIONS=steps, CHUNK=size, STEPS=block(size, 1 << 16, 16),
                                 BN=block(n, 1 << 16, 16))
    return out
'''

KERNELS = {
    "gated_recurrence": GATED_RECURRENT,
    "gated_chunk": GATED_CHUNK,
    "matrix_recurrence": MATRIX_RECURRENT,
    "heads_recurrence": HEADS_RECURRENT,
    "matrix_heads_chunk": MATRIX_HEADS_CHUNK,
    "delta_heads_chunk": DELTA_HEADS_CHUNK,
    "solve_chunk_cg": SOLVE_CHUNK,
}
