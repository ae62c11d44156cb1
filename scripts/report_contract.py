"""Renders the SDPA meta-learning safety contract: contract.json (from `theria contract`) -> one self-contained
index.html, readable offline: the claims with their verdicts, then one section per part of the contract (the studies'
own tables and figures, embedded), the operator check, the timing summary and the environment.

usage: python scripts/report_contract.py CONTRACT_JSON OUT_HTML
"""
import argparse
import base64
import html
import json
import pathlib

import markdown

SECTIONS = [  # (anchor, title, study, what it answers)
    ("taxonomy", "1. Failure taxonomy", "taxonomy",
     "Which ways of writing attention silently lose the second-order signal, how far each is from the exact "
     "meta-gradient, whether theria's check flags it, and what meta-training then learns (research plan, Phase 11)."),
    ("signal", "2. Signal → behaviour", "sweep",
     "Does the exact second-order signal turn into better learning as the inner loop deepens (Phase 12)?"),
    ("abstraction", "3. Unrolling vs implicit meta-gradients", "metagrad",
     "Unrolled, truncated, first-order, implicit (CG on Hessian-vector products) and Neumann meta-gradients against "
     "float64 oracles, their memory as the inner loop deepens, and meta-training with each (Phase 13)."),
    ("robustness", "4. Robustness and scaling map", "robustness",
     "FULL MAML through attention over sequence length × head dim × precision × backend, theria's and PyTorch's "
     "(Phase 14)."),
]
VERDICT_CLASS = {"holds": "holds", "fails": "fails", "not supported by the data": "unsupported"}

CSS = """
body{font-family:system-ui,-apple-system,'DejaVu Sans',sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.7em;margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.82em;margin:.8em 0;display:block;overflow-x:auto}
th,td{border:1px solid #ccc;padding:.25em .5em;vertical-align:top}th{background:#f3f3f3}
.verdict{font-weight:bold;padding:.1em .45em;border-radius:.3em;white-space:nowrap}
.holds{background:#d9f2d9;color:#145214}.fails{background:#f8d7da;color:#7a1120}
.unsupported{background:#fff3cd;color:#6b4e00}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.85em;color:#555}
code,pre{background:#f6f6f6;font-size:.85em}pre{padding:.6em;overflow-x:auto}
nav ol{columns:2}.env td:first-child{font-weight:bold}.muted{color:#666;font-size:.9em}
details{margin:.3em 0}
"""

# After loading, the page checks that every figure decoded; a browser (tests/python/test_contract_report.py) reads
# the result from #load-status.
CHECK = """
<script>
window.addEventListener('load', function () {
  var broken = [];
  document.querySelectorAll('img').forEach(function (img) {
    if (!img.complete || img.naturalWidth === 0) broken.push(img.alt || img.src.slice(0, 40));
  });
  var s = document.getElementById('load-status');
  s.textContent = broken.length ? 'broken: ' + broken.join(', ') : 'all ' + document.images.length + ' figures loaded';
  s.dataset.state = broken.length ? 'broken' : 'ok';
});
</script>
"""


def esc(x):
    return html.escape(str(x))


def md_to_html(text):
    return markdown.markdown(text, extensions=["tables", "fenced_code"])


def figure(path, caption):
    data = base64.b64encode(path.read_bytes()).decode()
    return (f'<figure><img alt="{esc(path.name)}" src="data:image/png;base64,{data}">'
            f'<figcaption>{esc(caption)}</figcaption></figure>')


def study_section(anchor, title, question, study, info):
    parts = [f'<section id="{anchor}"><h2>{esc(title)}</h2><p>{esc(question)}</p>']
    dirs = [pathlib.Path(d) for d in info.get("directories", [])] if info else []
    if not dirs:
        parts.append('<p class="muted">Not run on this machine: the claims that need it are "not supported by the '
                     'data".</p></section>')
        return "".join(parts)
    for d in dirs:
        md_file = d / f"{study}.md"
        if len(dirs) > 1:
            parts.append(f"<h3>{esc(d.name)}</h3>")
        if md_file.exists():
            text = md_file.read_text()
            if text.startswith("# "):  # the section has its own heading; the file's first line becomes a sub-title
                first, _, text = text.partition("\n")
                parts.append(f"<p><b>{esc(first[2:])}</b></p>")
            parts.append(md_to_html(text))
        for png in sorted(d.glob("*.png")):
            parts.append(figure(png, f"{study}: {png.name} ({d})"))
    parts.append("</section>")
    return "".join(parts)


def claims_table(claims):
    rows = []
    for c in claims:
        cls = VERDICT_CLASS.get(c["verdict"], "unsupported")
        files = ", ".join(esc(pathlib.Path(f).name) for f in c["evidence"].get("files", []))
        rows.append(
            f'<tr id="claim-{esc(c["id"])}"><td><span class="verdict {cls}">{esc(c["verdict"])}</span></td>'
            f'<td>{esc(c["phase"])}</td><td><b>{esc(c["statement"])}</b><br><span class="muted">{esc(c["id"])}</span>'
            f'</td><td>{esc(c["reason"])}<details><summary>rule and evidence</summary><p>{esc(c["rule"])}</p>'
            f'<p class="muted">files: {files or "—"}</p></details></td></tr>')
    return ("<table><tr><th>verdict</th><th>part</th><th>claim</th><th>why (numbers from the files)</th></tr>"
            + "".join(rows) + "</table>")


def timing_section(contract):
    parts = ['<section id="timing"><h2>5. Timing summary</h2>',
             "<p>The cost of a FULL and an FO meta-step in every cell of the robustness map is in section 4 (column "
             "FULL / FO ms). Below: one meta-step with each meta-gradient estimator (unrolled = FULL, first order = "
             "FO, truncated, implicit) as the inner loop deepens, then the operator on this machine from "
             "<code>theria bench</code>, side by side with PyTorch's SDPA backends in the same run.</p>"]
    parts.append(metagrad_timing(contract))
    bench = contract["studies"].get("bench", {})
    dirs = [pathlib.Path(d) for d in bench.get("directories", [])]
    if not dirs:
        parts.append('<p class="muted">No GPU bench in this tier (the quick tier runs on the CPU).</p>')
    for d in dirs:
        data = json.loads((d / "bench.json").read_text())
        head = ("<tr><th>B·H·T·D</th><th>mode</th><th>impl</th><th>ms</th><th>TFLOP/s</th><th>peak MiB</th>"
                "<th>vs flash</th><th>vs math</th></tr>")
        fmt = lambda x, f: "—" if x is None else format(x, f)  # noqa: E731
        rows = "".join(
            f"<tr><td>{r['batch']}·{r['heads']}·{r['len']}·{r['dim']}</td><td>{esc(r['mode'])}</td>"
            f"<td>{esc(r['impl'])}</td><td>{fmt(r.get('ms'), '.3f')}</td><td>{fmt(r.get('tflops'), '.1f')}</td>"
            f"<td>{fmt(r.get('peak_mib'), '.0f')}</td><td>{fmt(r.get('vs_flash'), '.2f')}</td>"
            f"<td>{fmt(r.get('vs_math'), '.2f')}</td></tr>" if not r.get("error") else
            f"<tr><td>{r['batch']}·{r['heads']}·{r['len']}·{r['dim']}</td><td>{esc(r['mode'])}</td>"
            f"<td>{esc(r['impl'])}</td><td colspan=5>{esc(r['error'])}</td></tr>" for r in data["results"])
        parts.append(f"<p>{esc(data.get('device', ''))}, {esc(data.get('dtype', ''))}</p><table>{head}{rows}</table>")
    parts.append("</section>")
    return "".join(parts)


def metagrad_timing(contract):
    """FULL (unrolled) vs FO (first order) vs implicit and the others: ms and peak memory of one meta-step per inner
    depth, seed 0 of each metagrad run."""
    out = []
    for d in (pathlib.Path(p) for p in contract["studies"].get("metagrad", {}).get("directories", [])):
        data = json.loads((d / "metagrad.json").read_text())
        cells = [c for c in data["cells"] if c["seed"] == 0]
        estimators = list(dict.fromkeys(c["estimator"] for c in cells))
        depths = sorted({c["inner_steps"] for c in cells})
        by = {(c["estimator"], c["inner_steps"]): c for c in cells}

        def cell(e, n):
            c = by.get((e, n))
            if c is None:
                return "<td>—</td>"
            if c["status"] == "out of memory":
                return "<td><b>out of memory</b></td>"
            ms, mib = c.get("ms"), c.get("peak_mib")
            return f"<td>{'—' if ms is None else f'{ms:.1f}'} ms<br>{'—' if mib is None else f'{mib:.0f}'} MiB</td>"

        head = "".join(f"<th>{n}</th>" for n in depths)
        rows = "".join(f"<tr><td>{esc(e)}</td>{''.join(cell(e, n) for n in depths)}</tr>" for e in estimators)
        out.append(f"<h3>Meta-step cost per estimator and inner depth ({esc(data['device_name'])}, "
                   f"{esc(data['config']['backend'])}, {esc(data['config']['dtype'])})</h3>"
                   f"<table><tr><th>estimator \\ inner steps</th>{head}</tr>{rows}</table>")
    return "".join(out) or '<p class="muted">No metagrad run: no meta-step cost per estimator.</p>'


def verify_section(contract):
    parts = ['<section id="operator"><h2>6. Operator check (<code>theria verify</code>)</h2>']
    dirs = [pathlib.Path(d) for d in contract["studies"].get("verify", {}).get("directories", [])]
    if not dirs:
        parts.append('<p class="muted">Not run.</p>')
    for d in dirs:
        rows = json.loads((d / "verify.json").read_text())
        rows = rows if isinstance(rows, list) else rows.get("rows", [])
        body = "".join(
            f"<tr><td>{esc(r['device'])}</td><td>{esc(r['backend'])}</td><td>{esc(r['derivative'])}</td>"
            f"<td>{esc(r['dtype'])}</td><td>{r['max_rel_error']:.3e}</td><td>{r['tolerance']:.1e}</td>"
            f"<td>{esc(r['status'])}</td></tr>" for r in rows)
        parts.append("<table><tr><th>device</th><th>backend</th><th>derivative</th><th>dtype</th>"
                     f"<th>max rel. error vs float64</th><th>tolerance</th><th>status</th></tr>{body}</table>")
    parts.append("</section>")
    return "".join(parts)


def environment_section(contract):
    env = dict(contract["environment"])
    ran_on = env.pop("studies_ran_on", {})
    rows = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in env.items())
    rows += "".join(f"<tr><td>{esc(name)} ran on</td><td>{esc(', '.join(m) or '—')}</td></tr>"
                    for name, m in ran_on.items())
    commands = "".join(f"<li><b>{esc(name)}</b>: <code>{esc(info['command'])}</code></li>"
                       for name, info in contract["studies"].items())
    return (f'<section id="environment"><h2>7. Environment and reproduction</h2><table class="env">{rows}</table>'
            f"<p>Made by <code>{esc(contract['command'])}</code> in {contract['seconds']:.0f} s. Each study as run "
            f"(its own files record the exact command):</p><ul>{commands}</ul></section>")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("contract")
    parser.add_argument("out")
    args = parser.parse_args()
    contract = json.loads(pathlib.Path(args.contract).read_text())
    counts = contract["verdict_counts"]
    env = contract["environment"]
    ran_on = sorted({m for ms in env.get("studies_ran_on", {}).values() for m in ms if m not in ("cpu", "cuda")})
    machine = env.get("gpu") or (", ".join(ran_on) + " (results from " + env["results_from"] + ")"
                                 if env.get("results_from") else "CPU only")
    toc = "".join(f'<li><a href="#{a}">{esc(t)}</a></li>' for a, t in
                  [("claims", "Claims and verdicts")] + [(a, t) for a, t, _, _ in SECTIONS] +
                  [("timing", "5. Timing summary"), ("operator", "6. Operator check"),
                   ("environment", "7. Environment and reproduction")])
    body = [
        f"<h1>SDPA meta-learning safety contract</h1><p class=muted>{esc(env['tier'])} tier · {esc(machine)} · "
        f"torch {esc(env['torch'])} · commit {esc(env['commit'])} · <span id=load-status data-state=pending>"
        "figures not checked</span></p>",
        f"<nav><b>Contents</b><ol>{toc}</ol></nav>",
        '<section id="claims"><h2>Claims and verdicts</h2>',
        f"<p>{counts.get('holds', 0)} hold, {counts.get('fails', 0)} fail, "
        f"{counts.get('not supported by the data', 0)} are not supported by the data. Every verdict comes from the "
        "rule beside it, applied by <code>theria contract</code> to the studies' files (lab/contract/claims.cpp); a "
        "claim the data contradicts is listed like any other.</p>",
        claims_table(contract["claims"]), "</section>",
    ]
    for anchor, title, study, question in SECTIONS:
        body.append(study_section(anchor, title, question, study, contract["studies"].get(study)))
    body += [timing_section(contract), verify_section(contract), environment_section(contract)]
    page = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>SDPA meta-learning safety contract"
            f"</title><style>{CSS}</style></head><body>{''.join(body)}{CHECK}</body></html>")
    pathlib.Path(args.out).write_text(page)


if __name__ == "__main__":
    main()
