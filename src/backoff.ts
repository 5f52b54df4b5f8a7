/**
 * The wait between compare-and-swap rounds after another writer came first: random (so that
 * competing writers spread out instead of colliding again) and growing with the attempt, capped.
 */
export function backoff(attempt: number, step: number, cap: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(cap, step * (attempt + 1))))
}
