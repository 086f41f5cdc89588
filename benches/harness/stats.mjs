// Summaries of repeated runs: median with min and max.

/** Median of finite numbers; null when there are none. */
export function median(values) {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b)
  if (v.length === 0) return null
  const mid = Math.floor(v.length / 2)
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2
}

/** `{ median, min, max, n }` of the finite numbers in `values`. */
export function summarize(values) {
  const v = values.filter(Number.isFinite)
  if (v.length === 0) return { median: null, min: null, max: null, n: 0 }
  return { median: median(v), min: Math.min(...v), max: Math.max(...v), n: v.length }
}

/** Short human form: 1.23M, 456k, 7.8k, 12.3. */
export function human(x) {
  if (x === null || x === undefined || !Number.isFinite(x)) return 'n/a'
  const a = Math.abs(x)
  if (a >= 1e6) return `${(x / 1e6).toFixed(a >= 1e7 ? 1 : 2)}M`
  if (a >= 1e4) return `${Math.round(x / 1e3)}k`
  if (a >= 1e3) return `${(x / 1e3).toFixed(1)}k`
  if (a >= 100) return `${Math.round(x)}`
  return x.toFixed(a >= 10 ? 1 : 2)
}
