// A hand-written SVG: one panel of horizontal bars per headline row, median bar with a
// min-max whisker, ours highlighted. No chart library.
import { human } from './stats.mjs'

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

const COLORS = { ws: '#9e9e9e', uws: '#5c6bc0', bun: '#f4a261', ours: '#2a9d8f' }

/**
 * `panels`: [{ title, better, bars: [{ label, key, median, min, max }] }].
 * Returns the SVG text.
 */
export function svgChart(title, subtitle, panels) {
  const cols = 2
  const panelW = 520
  const barH = 22
  const gap = 6
  const labelW = 210
  const head = 70
  const heights = panels.map((p) => 40 + p.bars.length * (barH + gap) + 10)
  const rows = Math.ceil(panels.length / cols)
  const rowH = Array.from({ length: rows }, (_, r) => Math.max(...heights.slice(r * cols, r * cols + cols)))
  const width = cols * panelW + 20
  const height = head + rowH.reduce((a, b) => a + b, 0) + 10
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="10" y="24" font-size="18" font-weight="bold">${esc(title)}</text>`,
    `<text x="10" y="46" fill="#555">${esc(subtitle)}</text>`,
  ]
  let y0 = head
  panels.forEach((p, i) => {
    const col = i % cols
    if (i > 0 && col === 0) y0 += rowH[Math.floor(i / cols) - 1]
    const x0 = 10 + col * panelW
    const plotW = panelW - labelW - 90
    const max = Math.max(...p.bars.map((b) => b.max ?? b.median ?? 0), 1e-9)
    out.push(`<text x="${x0}" y="${y0 + 18}" font-weight="bold">${esc(p.title)}${p.better === 'lower' ? ' (lower is better)' : ''}</text>`)
    p.bars.forEach((b, j) => {
      const y = y0 + 30 + j * (barH + gap)
      const w = b.median ? (b.median / max) * plotW : 0
      const color = COLORS[b.key] ?? COLORS.ours
      out.push(`<text x="${x0 + labelW - 6}" y="${y + barH * 0.7}" text-anchor="end">${esc(b.label)}</text>`)
      out.push(`<rect x="${x0 + labelW}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${color}"/>`)
      if (Number.isFinite(b.min) && Number.isFinite(b.max) && b.max > b.min) {
        const xa = x0 + labelW + (b.min / max) * plotW
        const xb = x0 + labelW + (b.max / max) * plotW
        const ym = y + barH / 2
        out.push(`<path d="M${xa.toFixed(1)} ${ym}H${xb.toFixed(1)}M${xa.toFixed(1)} ${ym - 5}V${ym + 5}M${xb.toFixed(1)} ${ym - 5}V${ym + 5}" stroke="#222" fill="none"/>`)
      }
      const tx = x0 + labelW + Math.max(w, Number.isFinite(b.max) ? (b.max / max) * plotW : 0) + 6
      out.push(`<text x="${tx.toFixed(1)}" y="${y + barH * 0.7}">${esc(b.median === null ? 'n/a' : human(b.median))}</text>`)
    })
  })
  out.push('</svg>')
  return out.join('\n') + '\n'
}
