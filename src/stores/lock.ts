/** What the three stores' lock() implementations share: option checks, errors, waits. */
import { SessionError } from '../errors.js'
import type { LockOptions, LockRelease } from './store.js'

/** setTimeout's longest delay (about 24.8 days); longer ones fire at once. */
export const MAX_TIMER = 2 ** 31 - 1

/** The error of an aborted wait: the signal's reason when it is an Error, else an AbortError. */
export const abortReason = (signal: AbortSignal): Error =>
  signal.reason instanceof Error ? signal.reason : new DOMException('the wait for a session lock was aborted', 'AbortError')

export function checkLockOptions({ ttl, wait }: LockOptions): void {
  if (!Number.isInteger(ttl) || ttl < 1)
    throw new TypeError(`tied-session: lock ttl must be a whole number of seconds >= 1, got ${String(ttl)}`)
  if (typeof wait !== 'number' || !(wait >= 0))
    throw new TypeError(`tied-session: lock wait must be a number of milliseconds >= 0, got ${String(wait)}`)
}

export function lockedError(key: string, waited: number): SessionError {
  const message = `session ${key} is locked by another holder; waited ${Math.round(waited)} ms. Try again later or wait longer (lockTimeout); a holder that never releases loses the lock after its lockTtl`
  return new SessionError('ERR_LOCKED', message)
}

/** Jittered backoff between tries for a held lock: 5-10 ms at first, growing to 50-100 ms. */
export const backoff = (attempt: number) => Math.min(100, 10 * 1.5 ** attempt) * (0.5 + Math.random() / 2)

/** Resolves after `ms`, or rejects with the abort reason as soon as `signal` aborts. */
export function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortReason(signal))
    const onAbort = () => {
      clearTimeout(timer)
      reject(abortReason(signal!))
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/** Calls `fn` after `ms` (any length) on an unref'd timer, so that it never keeps the process alive; returns the cancel. */
export function unrefAfter(ms: number, fn: () => void): () => void {
  const end = performance.now() + ms
  let timer: NodeJS.Timeout
  const arm = () => {
    const left = end - performance.now()
    timer = setTimeout(left > MAX_TIMER ? arm : fn, Math.min(Math.max(left, 0), MAX_TIMER)).unref()
  }
  arm()
  return () => clearTimeout(timer)
}

/**
 * Calls `tryOnce` until it takes the lock (resolves to its release), with jittered backoff, until
 * `opts.wait` has passed (ERR_LOCKED) or `opts.signal` aborts. A lock taken just as the signal
 * aborted is released again, so nothing stays locked.
 */
export async function pollLock(key: string, opts: LockOptions, tryOnce: () => Promise<LockRelease | undefined>): Promise<LockRelease> {
  checkLockOptions(opts)
  const { wait, signal } = opts
  if (signal?.aborted) throw abortReason(signal)
  const started = performance.now()
  for (let attempt = 0; ; attempt++) {
    const release = await tryOnce()
    if (release !== undefined) {
      if (!signal?.aborted) return release
      await release().catch(() => {}) // aborted while it was being taken
      throw abortReason(signal)
    }
    const waited = performance.now() - started
    if (waited >= wait) throw lockedError(key, waited)
    await pause(Math.min(backoff(attempt), wait - waited), signal)
  }
}
