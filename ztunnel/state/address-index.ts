/** Values by (network, IP). Nested maps rather than one `network/ip` key: the IP strings are the ones the values
 *  already hold, so the index stores no string of its own per address. */
export class AddressIndex<T> {
  private readonly byNetwork = new Map<string, Map<string, T>>();

  get(network: string, ip: string): T | undefined {
    return this.byNetwork.get(network)?.get(ip);
  }

  set(network: string, ip: string, value: T): void {
    let ips = this.byNetwork.get(network);
    if (!ips) this.byNetwork.set(network, (ips = new Map()));
    ips.set(ip, value);
  }

  /** Removes the entry only if it still holds `value` (another may have taken the address since). */
  delete(network: string, ip: string, value: T): void {
    const ips = this.byNetwork.get(network);
    if (ips?.get(ip) !== value) return;
    ips.delete(ip);
    if (ips.size === 0) this.byNetwork.delete(network);
  }
}
