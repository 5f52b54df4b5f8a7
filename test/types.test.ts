/**
 * The types tell the truth. The checks here are made by the type checker (`npm test` runs it
 * first): each `@ts-expect-error` fails the type check if the line below it compiles. The ava
 * test checks that what the types refuse is refused at run time too.
 */
import test from 'ava'
import {
  destroy,
  memoryStore,
  regenerate,
  reload,
  rich,
  save,
  snapshot,
  tieSession,
  untie,
  updateSession,
  type Tied,
} from '../src/index.js'

interface Cart {
  items: number[]
  owner: string
}

/** Compile-time only: never called. */
export async function typeChecks(): Promise<void> {
  const store = memoryStore()
  const s = await tieSession<Cart>(undefined, { store })
  // a field of T may be absent: a new session has none of them
  // @ts-expect-error s.items is possibly undefined
  s.items.push(1)
  s.items?.push(1)
  ;(s.items ??= []).push(1)
  const owner: string | undefined = s.owner
  // @ts-expect-error possibly undefined
  const must: string = s.owner
  const id: string = s._session_id
  // @ts-expect-error the id is read-only
  s._session_id = 'x'

  // the verbs take only tied sessions
  // @ts-expect-error a plain object is no tied session
  await save({ items: [] })
  // @ts-expect-error a copy is no tied session either
  await untie({ ...snapshot(s) })
  await save(s)

  // values JSON cannot keep are a type error with the default (json) serializer...
  // @ts-expect-error Date is not JSON
  await tieSession<{ at: Date }>(undefined, { store })
  // @ts-expect-error Map is not JSON, also without options
  await tieSession<{ seen: Map<string, number> }>()
  // @ts-expect-error bigint is not JSON
  await updateSession<{ n: bigint }>(id, () => undefined, { store })
  // ...and fine with a serializer that keeps them
  const r: Tied<{ at: Date; seen: Set<string> }> = await tieSession<{ at: Date; seen: Set<string> }>(undefined, { store, serializer: rich })
  r.at = new Date()
  void [owner, must]
}

test('what the types refuse is refused at run time: the verbs take only tied sessions', async (t) => {
  await t.throwsAsync(save({ items: [] } as never), { instanceOf: TypeError, message: /takes an object returned by tieSession/ })
  const s = await tieSession<Cart>(undefined, { store: memoryStore() })
  await t.throwsAsync(untie({ ...s } as never), { instanceOf: TypeError })
  // a rejected promise, never a synchronous throw (the verbs behave as async functions)
  for (const verb of [save, untie, reload, destroy, regenerate]) {
    const result = verb(null as never)
    t.true(result instanceof Promise)
    await t.throwsAsync(result, { instanceOf: TypeError, message: new RegExp(`${verb.name}\\(\\) takes an object returned by tieSession`) })
  }
  await untie(s)
})
