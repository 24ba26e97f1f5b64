export { CniInstaller, type InstallerOptions, type InstallState, type InstallerLogger } from './installer.js';
export {
  configFilenames, insertPlugin, removePlugin, hasPluginLast, ensurePluginInFile, removePluginFromDir, atomicWrite,
  CONVERTED_LIST_NAME, CONVERTED_LIST_VERSION,
} from './cniconfig.js';
export { copyBinary, removeBinary } from './binaries.js';
