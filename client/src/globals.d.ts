// The few host APIs the client uses, declared here so neither DOM nor Node typings are needed
// (browsers and Node both have them).
declare function setTimeout(callback: () => void, ms?: number): unknown
declare function clearTimeout(handle: unknown): void
declare function setInterval(callback: () => void, ms?: number): unknown
declare function clearInterval(handle: unknown): void
declare const console: { error(...args: unknown[]): void }
declare class URL {
  constructor(url: string)
  readonly searchParams: { set(name: string, value: string): void }
  toString(): string
}
