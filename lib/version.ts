/** lowbit's version, as package.json gives it (recorded in the files lowbit writes). */
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const LOWBIT_VERSION: string = (require('../package.json') as { version: string }).version;
