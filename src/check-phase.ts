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
  const runs = pending.splice(0, pending.length)
  let failure: { error: unknown } | undefined
  for (const run of runs) {
    try {
      run()
    } catch (error) {
      failure ??= { error } // the others still run; the first failure is thrown as a failed immediate's would be
    }
  }
  if (failure) throw failure.error
}
