/**
 * What the command prints: aligned tables and plain lines for people, JSON for programs, colour
 * only on a terminal and never with NO_COLOR (https://no-color.org).
 */
import { format } from 'node:util'
import { errorJson, errorLine, exitCodeOf } from './errors.js'

/** The ANSI styles the command uses. */
type Style = 'bold' | 'dim' | 'green' | 'red' | 'yellow' | 'cyan'

const CODES: Record<Style, [open: number, close: number]> = {
  bold: [1, 22],
  dim: [2, 22],
  green: [32, 39],
  red: [31, 39],
  yellow: [33, 39],
  cyan: [36, 39],
}

// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;]*m/g

/** A table cell: text, or text with a style applied after alignment. */
export type Cell = string | number | { text: string; style: Style }

/** Where and how a command prints. */
export class Output {
  /** True with --json: print one JSON document on stdout and nothing else. */
  readonly json: boolean
  /** True when stdout is a terminal and NO_COLOR is unset. */
  readonly colour: boolean

  constructor(opts: { json: boolean }) {
    this.json = opts.json
    this.colour = process.stdout.isTTY === true && process.env.NO_COLOR === undefined && !opts.json
  }

  /** `text` in `style` when colour is on. */
  paint(text: string, style: Style): string {
    if (!this.colour) return text
    const [open, close] = CODES[style]
    return `\u001b[${open}m${text}\u001b[${close}m`
  }

  /** Prints a line on stdout (printf-style arguments, as console.log). */
  line(...args: unknown[]): void {
    process.stdout.write(format(...args) + '\n')
  }

  /** Prints `value` as indented JSON on stdout. */
  print(value: unknown): void {
    process.stdout.write(JSON.stringify(value, null, 2) + '\n')
  }

  /**
   * Reports a failure: its one line on stderr and, with --json, one document on stdout, `result`
   * (what was done before it failed) with an `error` member. Returns the exit code.
   */
  fail(err: unknown, result: object = {}): number {
    process.stderr.write(`${errorLine(err)}\n`)
    if (this.json) this.print({ ...result, error: errorJson(err) })
    return exitCodeOf(err)
  }

  /** Prints an aligned table: a bold header row, then `rows`; `right` names columns aligned right. */
  table(headers: string[], rows: Cell[][], right: number[] = []): void {
    const text = (cell: Cell) => (typeof cell === 'object' ? cell.text : String(cell))
    const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => width(text(r[i] ?? '')))))
    const render = (cells: Cell[], header: boolean) =>
      cells
        .map((cell, i) => {
          const raw = text(cell)
          const pad = ' '.repeat(widths[i]! - width(raw))
          // the last column is not padded on the right: no trailing blanks
          const aligned = right.includes(i) ? pad + raw : i === cells.length - 1 ? raw : raw + pad
          if (header) return this.paint(aligned, 'bold')
          return typeof cell === 'object' ? aligned.replace(raw, this.paint(raw, cell.style)) : aligned
        })
        .join('  ')
        .trimEnd()
    this.line(render(headers, true))
    for (const row of rows) this.line(render(row, false))
  }
}

/** Columns a string takes on a terminal, ignoring colour codes (one per code point). */
function width(text: string): number {
  return [...text.replace(ANSI, '')].length
}

/** `bytes` for people: 512 B, 1.5 KiB, 64.0 MiB. */
export function humanBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`
  const units = ['KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes / 1024
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${value.toFixed(1)} ${units[unit]}`
}

/** A Unix time in seconds as ISO 8601 UTC without milliseconds, plus how far away it is. */
export function humanExpiry(exp: number, now = Date.now()): string {
  const iso = new Date(exp * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z')
  const left = Math.round(exp - now / 1000)
  if (left <= 0) return `${iso} (passed)`
  const d = Math.floor(left / 86400)
  const h = Math.floor((left % 86400) / 3600)
  const m = Math.floor((left % 3600) / 60)
  const span = d > 0 ? `${d}d${h}h` : h > 0 ? `${h}h${m}m` : m > 0 ? `${m}m${left % 60}s` : `${left}s`
  return `${iso} (in ${span})`
}
