/**
 * The automatic saves of all tied sessions in this process: the ones scheduled or running, so
 * that closeStores() runs them before it closes the stores, and the failed ones no one has seen,
 * reported at exit. A write is never dropped without a word.
 */

/** What the registry needs of a session. */
export interface AutoSaved {
  readonly id: string
  /** Runs the scheduled automatic save now (a failure is kept, as the automatic save's would be). */
  flushScheduled(): Promise<void>
  /** The failed automatic save no one has seen. */
  readonly unseenError: unknown
}

/** Sessions with an automatic save scheduled or running. */
export const scheduled = new Set<AutoSaved>()
/** Sessions holding a failed automatic save that no onError, save or untie has seen. */
const unseen = new Set<AutoSaved>()
let reporting = false

/** Runs every scheduled automatic save now and waits for them (closeStores calls it before closing stores). */
export async function flushScheduled(): Promise<void> {
  while (scheduled.size > 0) await Promise.all([...scheduled].map((session) => session.flushScheduled()))
}

/**
 * `session`'s automatic save failed and no onError saw it: it is kept for the next save or untie;
 * when the process exits and none came, it is written to stderr.
 */
export function unseenFailure(session: AutoSaved): void {
  unseen.add(session)
  if (reporting) return
  reporting = true
  process.once('exit', () => {
    for (const s of unseen) {
      const error = s.unseenError
      const message = error instanceof Error ? error.message : String(error)
      process.stderr.write(
        `tied-session: an automatic save of session ${s.id} failed and no save, untie or onError saw it; the change was not stored: ${message}\n`,
      )
    }
  })
}

/** A save or untie threw `session`'s kept failure: it was seen. */
export function seen(session: AutoSaved): void {
  unseen.delete(session)
}
