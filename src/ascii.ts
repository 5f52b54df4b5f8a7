/**
 * The UTF-8 length of a text known to be ASCII, without counting it again. A save's JSON text is
 * checked for non-ASCII characters once (json.ts asciiOnly, a native count over the whole
 * text); the wire client then needs its UTF-8 length for the command line, which would count it
 * a second time (about 0.6 µs for 1 KB on the benchmark machine, on every save).
 */

/** The last text noted as ASCII (one: a save's text goes to the wire in the same tick). */
let lastAscii: string | undefined

/** Notes that `text` is ASCII (every character below U+0080); returns it. */
export function noteAscii(text: string): string {
  lastAscii = text
  return text
}

/** `Buffer.byteLength(text)` (UTF-8), counted only unless `text` is the text last noted as ASCII. */
export function utf8Length(text: string): number {
  // a different string is equal only with the same characters: then it is ASCII too
  return text === lastAscii ? text.length : Buffer.byteLength(text)
}
