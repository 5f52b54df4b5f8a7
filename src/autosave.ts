/**
 * The automatic saves of all tied sessions in this process: the ones scheduled or running, so
 * that closeStores() runs them before it closes the stores, and the failed ones no one has seen,
 * reported at exit. A write is never dropped without a word.
 */

import { CheckPhaseBatch } from './check-phase.js'

/** What the registry needs of a session. */
export interface AutoSaved {
  readonly id: string
  /** Its automatic save is scheduled and has not started (a save or untie since clears it). */
  readonly due: boolean
  /** Runs the scheduled automatic save now (a failure is kept, as the automatic save's would be). */
  flushScheduled(): Promise<void>
  /** Starts the scheduled automatic save (its failure is kept, not thrown); returns when it ends. */
  runScheduled(): Promise<void>
  /** The failed automatic save no one has seen. */
  readonly unseenError: unknown
}

/**
 * Sessions whose automatic save was scheduled in this tick, started together at the next check
 * phase (check-phase.ts). A request changes its session and unties it in one tick: a session
 * cancels by clearing its own `due` flag, and this list only skips it. (An immediate, or a Set
 * entry, made and removed per session was 6-7% of a tie + change + untie on an in-memory store:
 * CPU profiles.)
 */
const due = new CheckPhaseBatch<AutoSaved>(runDue)
/** Sessions whose automatic save is running, with the latest one (a session changed while one runs gets another). */
const running = new Map<AutoSaved, Promise<void>>()

/** Starts `session`'s automatic save at the next check phase, as its own setImmediate would; `session.due` must be set. */
export function schedule(session: AutoSaved): void {
  due.add(session)
}

function runDue(sessions: AutoSaved[]): void {
  for (const session of sessions) {
    if (!session.due) continue // saved or untied meanwhile, or listed twice
    const run = session.runScheduled()
    running.set(session, run)
    // an earlier run that ends while a later one goes on leaves the session listed
    void run.finally(() => running.get(session) === run && running.delete(session))
  }
}
/** Sessions holding a failed automatic save that no onError, save or untie has seen. */
const unseen = new Set<AutoSaved>()
let reporting = false

/** Runs every scheduled automatic save now and waits for them (closeStores calls it before closing stores). */
export async function flushScheduled(): Promise<void> {
  for (;;) {
    const pending = new Set([...due.waiting.filter((session) => session.due), ...running.keys()])
    if (pending.size === 0) return
    await Promise.all([...pending].map((session) => session.flushScheduled()))
  }
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
