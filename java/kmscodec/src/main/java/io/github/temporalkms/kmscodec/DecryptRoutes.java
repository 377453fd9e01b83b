package io.github.temporalkms.kmscodec;

import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

/**
 * Says whom to ask to unwrap the data keys of a key ARN, following docs/FORMAT.md's
 * "Multi-Region keys". Without an own region, every payload goes to the one client, naming its
 * key ARN. With one:
 *
 * <ul>
 *   <li>a multi-Region key is unwrapped by its replica in the own region, then, only after a
 *       transient failure, by its replicas in the preferred regions, then in its own region,
 *       skipping regions without a client. Replicas share key material, so reading through the
 *       local one spares a call across regions and keeps reads going while the writer's region
 *       is down;
 *   <li>a single-Region key is unwrapped in its own region, by that region's client if there is
 *       one, else by the own region's client, which KMS answers only if the key is in fact there;
 *   <li>anything that is not a key ARN goes to the own region's client as it is.
 * </ul>
 */
final class DecryptRoutes {
  /** One way to unwrap a data key: the client to call, and the key ARN KMS must name back. */
  record Target(KmsCalls kms, String keyArn) {}

  private final String home;
  private final Map<String, KmsCalls> clients;
  private final List<String> preference;

  private DecryptRoutes(String home, Map<String, KmsCalls> clients, List<String> preference) {
    this.home = home;
    this.clients = clients;
    this.preference = preference;
  }

  /** Every payload to {@code kms}, naming its own key ARN. */
  static DecryptRoutes single(KmsCalls kms) {
    return new DecryptRoutes("", Map.of("", kms), List.of());
  }

  /**
   * Routes over the clients of several regions; {@code home} is the codec's own region, which
   * must have a client in {@code clients}.
   */
  static DecryptRoutes regional(
      String home, Map<String, KmsCalls> clients, List<String> preference) {
    return new DecryptRoutes(home, Map.copyOf(clients), List.copyOf(preference));
  }

  /** The targets to try for {@code keyArn}, best first; at least one. */
  List<Target> route(String keyArn) {
    KmsCalls homeClient = clients.get(home);
    Optional<KeyArns.KeyArn> parsed = home.isEmpty() ? Optional.empty() : KeyArns.parse(keyArn);
    if (parsed.isEmpty()) {
      return List.of(new Target(homeClient, keyArn));
    }
    KeyArns.KeyArn arn = parsed.get();
    if (!arn.isMultiRegion()) {
      return List.of(new Target(clients.getOrDefault(arn.region(), homeClient), keyArn));
    }
    Set<String> regions = new LinkedHashSet<>();
    regions.add(home);
    regions.addAll(preference);
    regions.add(arn.region());
    List<Target> targets = new ArrayList<>(regions.size());
    for (String region : regions) {
      KmsCalls client = clients.get(region);
      if (client != null) {
        targets.add(new Target(client, arn.inRegion(region).toString()));
      }
    }
    return targets;
  }
}
