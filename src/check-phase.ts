/**
 * Work for the next check phase of the event loop (where setImmediate callbacks run), all of it
 * from one setImmediate: the automatic saves scheduled in a tick (autosave.ts) and the source
 * texts sessions let go of (merge-bases.ts) share it, so a request that ties, changes and unties
 * costs one immediate, not one per purpose.
 */

const pending: Array<() => void> = []
let immediate: NodeJS.Immediate | undefined

function atCheckPhase(run: () => void): void {
  pending.push(run)
  immediate ??= setImmediate(runPending)
}

function runPending(): void {
  immediate = undefined
  // what these runs schedule goes to the next check phase
  const runs = pending.splice(0, pending.length)
  const failures: unknown[] = []
  for (const run of runs) {
    try {
      run()
    } catch (error) {
      failures.push(error) // the others still run; every failure is thrown, as a failed immediate's would be
    }
  }
  if (failures.length === 1) throw failures[0]
  if (failures.length > 1) throw new AggregateError(failures, 'tied-session: work of a check phase failed')
}

/** Items gathered during a tick and handed to `run` together at the next check phase. */
export class CheckPhaseBatch<T> {
  private items: T[] = []

  constructor(private readonly run: (items: T[]) => void) {}

  add(item: T): void {
    if (this.items.length === 0) atCheckPhase(this.flush)
    this.items.push(item)
  }

  /** The items added since the last check phase. */
  get waiting(): readonly T[] {
    return this.items
  }

  private readonly flush = (): void => {
    const items = this.items
    this.items = []
    this.run(items)
  }
}
