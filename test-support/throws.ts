// What a call throws, as the tests compare it: the error's class and its code.

/** `[class name, code]` of what `fn` throws, or `'no throw'`. */
export function thrownBy(fn: () => unknown): [string, string | undefined] | 'no throw' {
  try {
    fn()
  } catch (e) {
    return [(e as Error).constructor.name, (e as { code?: string }).code]
  }
  return 'no throw'
}
