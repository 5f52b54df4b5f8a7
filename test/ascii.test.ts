import test from 'ava'
import { noteAscii, utf8Length } from '../src/ascii.js'
import { json } from '../src/json.js'

test('utf8Length: the length of the text last noted as ASCII, the UTF-8 count of any other', (t) => {
  const text = noteAscii('{"a":"plain"}')
  t.is(utf8Length(text), 13)
  t.is(utf8Length(['{"a":', '"plain"}'].join('')), 13, 'an equal string is that text')
  for (const other of ['é', 'a€b', '𝄞', '\ud800', '{"a":"plaîn"}']) t.is(utf8Length(other), Buffer.byteLength(other), other)
})

test('json: an ASCII text is noted as such; a text with other characters is escaped to ASCII first', (t) => {
  const plain = json.stringify({ a: 'plain' })
  t.is(utf8Length(plain), plain.length)
  const escaped = json.stringify({ a: 'café 𝄞' })
  t.is(escaped, '{"a":"caf\\u00e9 \\ud834\\udd1e"}')
  t.is(utf8Length(escaped), escaped.length)
  t.is(utf8Length('café'), 5, 'the raw text is not taken for the escaped one')
})
