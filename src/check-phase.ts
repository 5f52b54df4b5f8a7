/**
 * Work for the next check phase of the event loop (where setImmediate callbacks run), all of it
 * from one setImmediate: the automatic saves scheduled in a tick (autosave.ts) and the source
 * texts sessions let go of (merge-bases.ts) share it, so a request that ties, changes and unties
 * costs one immediate, not one per purpose.
 */

const pending: Array<() => void> = []
let immediate: NodeJS.Immediate | undefined

/** Runs `run` at the next check phase, once per call: pass a function made once, not a new closure each time. */
export function atCheckPhase(run: () => void): void {
  pending.push(run)
  immediate ??= setImmediate(runPending)
}

function runPending(): void {
  immediate = undefined
  // what these runs schedule goes to the next check phase
  const count = pending.length
  try {
    for (let i = 0; i < count; i++) pending[i]!()
  } finally {
    pending.splice(0, count)
  }
}
