"""SRSNet training-step throughput, side by side in one process: phase 1 (R alone, MSE), phase 2 (frozen R + S with
DPConv, 0.5 BCE + Dice) and phase 2 without DPConv, each under fp32 eager, bf16 autocast + channels_last eager, and
bf16 + channels_last + torch.compile (default and 'reduce-overhead'), plus an inference row (eval, no_grad) per config.

The compiled rows compile as the Trainer compiles: `medseg_tutor.train.engine.compile_module(net, mode, options)`, which
applies the Inductor options the SRS networks declare (`inductor_options` = `nets.srsnet.SRSNET_COMPILE_OPTIONS`:
mix-order reduction off). With it on (torch's default since 2.10) the phase-2 step did not compile on an H200 (torch
2.11, 2026-11-30): Triton "NameError('tmp12 is not defined')" in a fused batch-norm-backward + max + sigmoid kernel.
`--mix-order on` overrides the networks' option (as `TrainConfig.compile_options` would) to reproduce that failure.

A training step is the recipes' step (`medseg_tutor.train.recipes` srsnet-*): forward under autocast, the loss in fp32
(`reconstruction_loss` / `segmentation_loss`), backward, SGD (lr 0.01, momentum 0.9, wd 1e-4; fused on CUDA, as the
engine) over the parameters that require grad. `--engine-checks` adds what `Trainer.train_step` does besides
(global grad norm + one host sync per step for the finite check), to see what they cost. Timing: `--warmup` steps
(the first one compiles), then `--steps` steps between two `torch.cuda.synchronize()`. After the timed steps every row
checks, once (one host sync, outside the timing), that the last loss (or inference output) and all the network's weights
and buffers are finite: a row that trained or ran into NaN/Inf is reported as NON-FINITE, never as a speed.
Each row starts from the same fresh state: the network rebuilt from seed 0, a new optimiser, the same batch, Dynamo reset.

    python bench/bench_srsnet.py --device cuda --size 256 --batch 8 --steps 20          # full size (GPU)
    python bench/bench_srsnet.py --device cpu --size 64 --batch 2 --steps 2 --tiny      # smoke test (CPU)
    python bench/bench_srsnet.py --profile bf16cl --models RS                            # top-15 CUDA kernels of one config
"""
import argparse, contextlib, math, os, sys, time, traceback
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch, torch._dynamo
from medseg_tutor.core import get_device
from medseg_tutor.nets.srsnet import SRSReconstructionNet, SRSSegmentationNet, SRSNet, ResBlock
from medseg_tutor.train.srsnet import reconstruction_loss, segmentation_loss
from medseg_tutor.train.engine import compile_module, declared_inductor_options

# name -> (label, amp, channels_last, compile mode or None)
CONFIGS = {'fp32': ('fp32 eager', None, False, None),
           'bf16cl': ('bf16 + channels_last, eager', 'bf16', True, None),
           'compile': ('bf16 + cl + compile(default)', 'bf16', True, 'default'),
           'ro': ('bf16 + cl + compile(reduce-overhead)', 'bf16', True, 'reduce-overhead'),
           'regional': ('bf16 + cl + compile per ResBlock', 'bf16', True, 'regional')}
# 'regional': only the residual blocks are compiled (each block's forward once per distinct shape, then reused by every
# block of that shape): far less to compile than the whole network, no fusion across blocks, no CUDA graphs.
# --mix-order -> the Inductor options the compiled rows set over their mode's and the networks' own. 'off' adds nothing:
# the networks declare mix-order reduction off. 'on' sets it explicitly. Either way the option is passed to torch.compile
# explicitly, so TORCHINDUCTOR_MIX_ORDER_REDUCTION in the environment does not change what a row measures.
MIX_ORDER_OPTIONS = {'off': {}, 'on': {'triton.mix_order_reduction': True}}

def compile_options(mix_order:str) -> dict:
    "The Inductor options the compiled rows set over the networks' own: none for `--mix-order off`, the override for 'on'."
    return dict(MIX_ORDER_OPTIONS[mix_order])

def mix_order_note(mix_order:str) -> str:
    "What the table header says about the compiled rows."
    return ("compiled rows: Inductor mix-order reduction OFF (declared by the SRS networks: SRSNET_COMPILE_OPTIONS)" if mix_order == 'off'
            else "compiled rows: Inductor mix-order reduction ON (--mix-order on; the phase-2 compile failed with it, H200, torch 2.11)")

CHK = '+chk'     # suffix: the same config with the engine's per-step checks (global grad norm + one host sync)

def conf(name:str) -> tuple:
    "(label, amp, channels_last, compile mode, engine checks) of a config name such as 'ro' or 'ro+chk'."
    base, chk = (name[:-len(CHK)], True) if name.endswith(CHK) else (name, False)
    label, amp, cl, mode = CONFIGS[base]
    return (label + (' + engine checks' if chk else ''), amp, cl, mode, chk)

def config_name(name:str) -> str:
    "argparse type: a known config, optionally with the +chk suffix."
    if (name[:-len(CHK)] if name.endswith(CHK) else name) not in CONFIGS:
        raise argparse.ArgumentTypeError(f"unknown config {name!r}: use {', '.join(CONFIGS)} (each optionally with {CHK})")
    return name

def cell(text:str) -> tuple:
    "argparse type: 'CONFIG:MODEL' or 'CONFIG:MODEL:infer' -> (config, model, 'train' | 'infer')."
    parts = text.split(':')
    if len(parts) not in (2, 3) or parts[1] not in MODELS or (len(parts) == 3 and parts[2] != 'infer'):
        raise argparse.ArgumentTypeError(f"bad cell {text!r}: use CONFIG:MODEL or CONFIG:MODEL:infer, MODEL one of {', '.join(MODELS)}")
    return (config_name(parts[0]), parts[1], 'infer' if len(parts) == 3 else 'train')

MODELS = {'R': 'phase 1: R (MSE)', 'RS': 'phase 2: frozen R + S, DPConv', 'S': 'phase 2: S, no DPConv'}

def build(model:str, tiny:bool):
    "The network of one row: R (phase 1) or an SRSNet (phase 2) as the srsnet recipes build it."
    torch.manual_seed(0)
    rk = dict(stem=8, widths=(8, 8, 16, 32), depths=(1, 1, 1, 1)) if tiny else {}
    sk = dict(stem=8, widths=(8, 16, 32, 64), depths=(1, 1, 1, 1), info_channels=32) if tiny else {}
    R = SRSReconstructionNet(**rk)
    if model == 'R': return R
    return SRSNet(R, SRSSegmentationNet(use_dpconv=(model == 'RS'), **sk))

def make_step(net, model, opt, x, y, amp, dev, engine_checks:bool, cudagraphs:bool):
    "One training step as a closure (returns the loss tensor, no host sync unless engine_checks)."
    ctx = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if amp == 'bf16' else contextlib.nullcontext
    params = [p for g in opt.param_groups for p in g['params']]
    def step():
        if cudagraphs: torch.compiler.cudagraph_mark_step_begin()
        with ctx(): out = net(x)
        loss = reconstruction_loss(out.float(), x) if model == 'R' else segmentation_loss(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if engine_checks:
            gnorm = torch.nn.utils.clip_grad_norm_(params, float('inf'))
            if not bool(torch.isfinite(loss.detach()) & torch.isfinite(gnorm)): raise FloatingPointError('non-finite loss')
        opt.step()
        return loss
    return step

def make_infer(net, x, amp, dev, cudagraphs):
    ctx = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if amp == 'bf16' else contextlib.nullcontext
    def infer():
        if cudagraphs: torch.compiler.cudagraph_mark_step_begin()
        with torch.no_grad(), ctx(): return net(x).float().sum()     # consume the output (a CUDA-graph output is overwritten next call)
    return infer

def sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize(dev)

def timed(fn, warmup, steps, dev):
    "(warm-up s, ms per call, peak MiB, last output): warm-up calls (compilation included), then `steps` synchronised calls."
    if dev.type == 'cuda': torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    for _ in range(warmup): out = fn()
    sync(dev); t1 = time.perf_counter()
    for _ in range(steps): out = fn()
    sync(dev); t2 = time.perf_counter()
    peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == 'cuda' else float('nan')
    return t1 - t0, (t2 - t1) / steps * 1e3, peak, out

def nonfinite(m, out) -> str:
    "'' if `out` (the last loss / inference sum) and every floating weight and buffer of `m` are finite, else what is not."
    sd = {k: v for k, v in m.state_dict().items() if v.is_floating_point()}
    flags = torch.stack([torch.isfinite(out.detach()).all()] + [torch.isfinite(v).all() for v in sd.values()]).cpu()   # one sync
    if bool(flags.all()): return ''
    bad = [k for k, ok in zip(sd, flags[1:].tolist()) if not ok]
    return f"last {'loss' if out.dim() == 0 else 'output'} {out.detach().float().sum().item():.4g}; {len(bad)} non-finite tensors{', e.g. ' + bad[0] if bad else ''}"

def setup(model, cfg, a, dev):
    "(model, net, opt, x, y): the row's network (channels_last / compiled as configured), optimiser and a batch."
    label, amp, cl, mode, chk = conf(cfg)
    m = build(model, a.tiny).to(dev)
    if cl: m = m.to(memory_format=torch.channels_last)
    opts = compile_options(getattr(a, 'mix_order', 'off'))
    if mode == 'regional':
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)   # one entry per block shape
        bopts = {**declared_inductor_options(m), **opts}          # a block compiled alone gets its network's options
        for b in m.modules():
            if isinstance(b, ResBlock): b.compile(dynamic=False, options=bopts)     # in place (default mode + options)
        net = m
    else: net = compile_module(m, mode, opts) if mode else m
    params = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4, **({'fused': True} if dev.type == 'cuda' else {}))
    g = torch.Generator().manual_seed(1)
    x = torch.rand(a.batch, 3, a.size, a.size, generator=g).to(dev)
    y = (torch.rand(a.batch, 1, a.size, a.size, generator=g) > 0.9).float().to(dev)
    if cl: x = x.contiguous(memory_format=torch.channels_last)
    return m, net, opt, x, y

def fmt_table(rows, base):
    order = lambda r: (r['kind'] != 'train', list(MODELS).index(r['model']), list(CONFIGS).index(r['cfg'].removesuffix(CHK)), r['cfg'])
    rows = sorted(rows, key=order)
    out = ['| step | model | config | img/s | ms/step | vs fp32 eager | warm-up s (incl. compile) | peak MiB |', '|---|---|---|---|---|---|---|---|']
    for r in rows:
        if r.get('error'):
            out.append(f"| {r['kind']} | {MODELS[r['model']]} | {conf(r['cfg'])[0]} | {r['error']} | | | | |"); continue
        b = base.get((r['kind'], r['model']))
        ratio = f"{r['img_s'] / b:.2f}x" if b else '-'
        peak = '-' if math.isnan(r['peak']) else f"{r['peak']:.0f}"
        out.append(f"| {r['kind']} | {MODELS[r['model']]} | {conf(r['cfg'])[0]} | {r['img_s']:.1f} | {r['ms']:.1f} | {ratio} | {r['warm']:.1f} | {peak} |")
    return '\n'.join(out)

def _md_rows(events, dt, steps, total, name_of, n=15):
    rows = []
    for i, e in enumerate(events[:n]):
        name = name_of(e); name = name if len(name) <= 110 else name[:107] + '...'
        rows.append(f"| {i + 1} | `{name}` | {e.count / steps:.0f} | {dt(e) / 1e3 / steps:.2f} | {100 * dt(e) / max(total, 1):.1f} |")
    return rows

def profile(a, dev):
    "Top-15 kernels (CUDA; CPU ops on a CPU) by total time over `--steps` training steps of one config, the GPU busy share,\n"
    "and the top-15 ATen ops by the device time of the kernels they launch, by input shapes (which layer costs what)."
    from torch.profiler import profile as tprofile, ProfilerActivity
    cuda = dev.type == 'cuda'
    for model in a.models:
        m, net, opt, x, y = setup(model, a.profile, a, dev)
        label, amp, cl, mode, chk = conf(a.profile)
        step = make_step(net, model, opt, x, y, amp, dev, chk or a.engine_checks, mode == 'reduce-overhead')
        for _ in range(a.warmup): step()
        sync(dev)
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with tprofile(activities=acts, record_shapes=True) as prof:
            t0 = time.perf_counter()
            for _ in range(a.steps): step()
            sync(dev); wall = time.perf_counter() - t0
        ev = prof.key_averages()
        if cuda:
            dt = lambda e: getattr(e, 'device_time_total', None) or getattr(e, 'cuda_time_total', 0)   # a kernel has no children
            kern = [e for e in ev if str(e.device_type).endswith('CUDA') and dt(e) > 0]
        else:
            dt = lambda e: e.self_cpu_time_total
            kern = [e for e in ev if dt(e) > 0]
        total = sum(dt(e) for e in kern)
        kern.sort(key=dt, reverse=True)
        what = 'CUDA kernels' if cuda else 'CPU ops (self time)'
        print(f"\n### Profile: {MODELS[model]}, {conf(a.profile)[0]}, batch {a.batch}, {a.size}x{a.size}, {a.steps} steps")
        print(f"wall {wall / a.steps * 1e3:.1f} ms/step; summed {what} {total / 1e3 / a.steps:.1f} ms/step "
              f"({100 * total / 1e6 / wall:.0f} % of wall{'; < 100 %: the GPU waits for the host' if cuda else ''}); "
              f"{sum(e.count for e in kern) / a.steps:.0f} {'kernel launches' if cuda else 'op calls'}/step\n")
        print('\n'.join([f"| # | {what} | calls/step | ms/step | % |", '|---|---|---|---|---|'] + _md_rows(kern, dt, a.steps, total, lambda e: e.key)))
        # the ATen ops that launched the kernels (self device time: nested ops are not counted twice), by input shapes
        ops = prof.key_averages(group_by_input_shape=True)
        sdt = (lambda e: getattr(e, 'self_device_time_total', None) or getattr(e, 'self_cuda_time_total', 0)) if cuda else dt
        ops = sorted([e for e in ops if not str(e.device_type).endswith('CUDA') and sdt(e) > 0], key=sdt, reverse=True)
        shp = lambda e: f"{e.key} {[list(t) for t in (e.input_shapes or []) if t][:3]}".replace(' ', '')
        print('\n'.join(['', f"| # | ATen op [input shapes] | calls/step | ms/step ({'device' if cuda else 'CPU self'}) | % |",
                         '|---|---|---|---|---|'] + _md_rows(ops, sdt, a.steps, total, shp)))
        if a.out and a.trace: prof.export_chrome_trace(str(Path(a.out)/f'trace_{model}_{a.profile}.json'))
        del m, net, opt
        if cuda: torch.cuda.empty_cache()

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog='\n\n'.join(__doc__.split('\n\n')[1:]))
    p.add_argument('--device', default='auto', help="'auto', 'cuda', 'cpu'")
    p.add_argument('--size', type=int, default=256, help='image edge (a multiple of 8)')
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--steps', type=int, default=20, help='timed steps per row')
    p.add_argument('--warmup', type=int, default=3, help='untimed steps first (the first one compiles)')
    p.add_argument('--configs', nargs='+', default=list(CONFIGS), type=config_name,
                   help=f"of {', '.join(CONFIGS)}; a {CHK} suffix adds the engine's per-step checks (e.g. bf16cl{CHK})")
    p.add_argument('--models', nargs='+', default=list(MODELS), choices=list(MODELS), help='R: phase 1; RS: phase 2 with DPConv; S: phase 2 without')
    p.add_argument('--infer', nargs='*', default=['RS'], choices=list(MODELS), help='models that also get an inference row per config')
    p.add_argument('--cells', nargs='+', type=cell, metavar='CONFIG:MODEL[:infer]',
                   help='run exactly these rows in this order (e.g. bf16cl:RS compile:RS ro:RS fp32:RS:infer) instead of --models x --configs')
    p.add_argument('--engine-checks', action='store_true', help="add the engine's per-step grad norm + host sync")
    p.add_argument('--tiny', action='store_true', help='narrow one-block networks (CPU smoke tests of every path)')
    p.add_argument('--budget', type=float, default=None, help='seconds: no new row starts after this (the table keeps the rows done)')
    p.add_argument('--profile', type=config_name, help='instead of the table: top-15 kernels of this config (for --models)')
    p.add_argument('--trace', action='store_true', help='with --profile and --out: also write the Chrome trace (large)')
    p.add_argument('--out', help='folder: table.md (rewritten after every row), profile traces')
    p.add_argument('--mix-order', choices=['off', 'on'], default='off',
                   help="Inductor's mix-order reduction in the compiled rows: off (default: as the SRS networks declare, "
                        "SRSNET_COMPILE_OPTIONS) or on (torch's default, set over the networks' option; reproduces the "
                        "failed phase-2 compile of 2026-11-30)")
    a = p.parse_args(argv)
    dev = get_device(a.device)
    if a.size % 8: p.error(f'--size must be a multiple of 8 (SRS pools three times), got {a.size}')
    if dev.type == 'cuda': torch.backends.cudnn.benchmark = True        # as the engine
    else: torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', 1)))
    if a.out: Path(a.out).mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'CPU'
    head = (f"SRSNet training step, batch {a.batch}, {a.size}x{a.size}, {name}, torch {torch.__version__}"
            f"{', TINY networks' if a.tiny else ''}{', with the engine per-step checks' if a.engine_checks else ''}; "
            f"{a.steps} timed steps after {a.warmup} warm-up; SGD fused={dev.type == 'cuda'}; cuDNN TF32 as torch's default "
            f"({torch.backends.cudnn.allow_tf32}); {mix_order_note(a.mix_order)}")
    print(head, flush=True)
    if a.profile: return profile(a, dev)

    rows, base, t_start, seen = [], {}, time.perf_counter(), {'cudagraph skips': 0, 'graph breaks': 0, 'compiled graphs': 0}
    # rows run model by model in --models order, each model's configs in --configs order (most wanted first: a compile
    # takes a minute or more, and --budget stops starting rows), then the inference rows; the table is sorted anyway
    infer = lambda c, m: m in a.infer and not c.endswith(CHK)          # the engine's checks are training-step work
    cells = [(c, m, 'train') for m in a.models for c in a.configs] + [(c, m, 'infer') for m in a.models for c in a.configs if infer(c, m)]
    if a.cells: cells = a.cells                                          # an explicit order instead
    for cfg, model, kind in cells:
        if a.budget is not None and time.perf_counter() - t_start > a.budget:
            rows.append(dict(kind=kind, model=model, cfg=cfg, error='skipped (--budget)')); continue
        label, amp, cl, mode, chk = conf(cfg)
        try:
            m, net, opt, x, y = setup(model, cfg, a, dev)
            if kind == 'train':
                m.train(); fn = make_step(net, model, opt, x, y, amp, dev, chk or a.engine_checks, mode == 'reduce-overhead')
            else:
                m.eval(); fn = make_infer(net, x, amp, dev, mode == 'reduce-overhead')
            warm, ms, peak, out = timed(fn, a.warmup, a.steps, dev)
            r = dict(kind=kind, model=model, cfg=cfg, img_s=a.batch / ms * 1e3, ms=ms, warm=warm, peak=peak)
            bad = nonfinite(m, out)
            if bad:      # a speed of NaN training is no result: report it as such (the timing only in the log line)
                print(f"  {kind:5s} {model:2s} {label:38s} NON-FINITE after {a.warmup + a.steps} steps ({bad}); "
                      f"it ran at {r['img_s']:.1f} img/s", flush=True)
                rows.append(dict(kind=kind, model=model, cfg=cfg, error=f"NON-FINITE after {a.warmup + a.steps} steps ({bad[:70]})"))
            else:
                if cfg == 'fp32': base[(kind, model)] = r['img_s']
                rows.append(r)
                print(f"  {kind:5s} {model:2s} {label:38s} {r['img_s']:8.1f} img/s {ms:8.1f} ms/step  warm-up {warm:6.1f} s  "
                      f"peak {peak:.0f} MiB", flush=True)
        except Exception as e:
            traceback.print_exc(limit=3)
            rows.append(dict(kind=kind, model=model, cfg=cfg, error=f'FAILED: {type(e).__name__}: {str(e)[:80]}'))
        finally:
            m = net = opt = fn = out = None
            c = torch._dynamo.utils.counters              # dynamo.reset() clears them: keep the totals
            seen['cudagraph skips'] += dict(c.get('inductor', {})).get('cudagraph_skips', 0)
            seen['graph breaks'] += sum(c.get('graph_break', {}).values())
            seen['compiled graphs'] += dict(c.get('frames', {})).get('ok', 0)
            c.clear(); torch._dynamo.reset()
            if dev.type == 'cuda': torch.cuda.empty_cache()
        if a.out: (Path(a.out)/'table.md').write_text(head + '\n\n' + fmt_table(rows, base) + '\n')
    print(f"\n{head}\n(total {time.perf_counter() - t_start:.0f} s; summed over the rows: "
          f"{', '.join(f'{k} {v}' for k, v in seen.items())})\n\n" + fmt_table(rows, base), flush=True)

if __name__ == '__main__': main()
