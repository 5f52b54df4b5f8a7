/**
 * `sweep`: removes the files of expired keys from the file store, with a progress bar on a
 * terminal. memcached needs no sweep: it drops expired items itself.
 */
import { expectArgs, type Command } from './context.js'
import { EXIT } from './errors.js'

/** Redraws of the progress bar at most this often (ms). */
const REDRAW_MS = 80
const BAR = 30

/** `sweep`: prints how many expired keys were removed. */
export const sweep: Command = async (ctx) => {
  expectArgs(ctx, 0, 0, 'no arguments')
  const open = ctx.open()
  if (open.kind === 'memcached') {
    const note = 'memcached expires items itself; there is nothing to sweep'
    if (ctx.out.json) ctx.out.print({ removed: 0, note })
    else ctx.out.line(note)
    return EXIT.ok
  }
  const bar = process.stderr.isTTY === true && !ctx.out.json ? progressBar() : undefined
  let removed: number
  try {
    removed = await open.store.deleteExpired(bar === undefined ? undefined : { onProgress: bar.draw })
  } finally {
    bar?.clear()
  }
  if (ctx.out.json) ctx.out.print({ removed, directory: open.store.directory })
  else ctx.out.line(`removed ${removed} expired key${removed === 1 ? '' : 's'} (sessions and index entries) from ${open.store.directory}`)
  return EXIT.ok
}

/** A one-line bar on stderr, redrawn in place: `[#####-----]  50/100 files`. */
function progressBar() {
  let last = 0
  let drawn = false
  return {
    draw: (done: number, total: number) => {
      const now = performance.now()
      if (done < total && now - last < REDRAW_MS) return
      last = now
      const filled = total === 0 ? BAR : Math.round((done / total) * BAR)
      process.stderr.write(`\r[${'#'.repeat(filled)}${'-'.repeat(BAR - filled)}] ${done}/${total} files`)
      drawn = true
    },
    clear: () => {
      if (drawn) process.stderr.write('\r\u001b[K')
    },
  }
}
