package io.github.temporalkms.kmscodec;

import com.github.benmanes.caffeine.cache.Cache;
import com.github.benmanes.caffeine.cache.Caffeine;
import com.github.benmanes.caffeine.cache.Ticker;
import io.temporal.api.common.v1.Payload;
import io.temporal.common.converter.CodecDataConverter;
import io.temporal.common.converter.DataConverter;
import io.temporal.common.converter.DefaultDataConverter;
import io.temporal.payload.codec.PayloadCodec;
import io.temporal.payload.context.HasWorkflowSerializationContext;
import io.temporal.payload.context.SerializationContext;
import java.time.Clock;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import javax.annotation.Nonnull;
import software.amazon.awssdk.services.kms.KmsClient;

/**
 * A Temporal {@link PayloadCodec} that encrypts every payload in the kms-envelope-v1 format
 * (docs/FORMAT.md) under its own key, derived from a data key that AWS KMS generated, and decrypts
 * such payloads again. It is safe for concurrent use.
 *
 * <p>Build one per process with {@link #newBuilder()}, and give {@link #newDataConverter()} to
 * {@code WorkflowClientOptions}: workers take the client's converter. The SDK tells the codec the
 * namespace of each workflow and activity ({@link #withContext}), which goes into the KMS
 * encryption context under {@value #NAMESPACE_CONTEXT_KEY}; views made by {@link #withContext}
 * and {@link #withNamespace} share the caches of the codec they come from.
 *
 * <p>Data keys are cached: one GenerateDataKey per namespace per {@code dataKeyMaxAge} (or
 * {@code maxPayloadsPerDataKey} payloads), one Decrypt per data key read. Concurrent requests for
 * one key share one KMS call. A KMS failure fails the call with {@link KmsCallException}; nothing
 * is ever returned unencrypted because KMS failed.
 */
public final class KmsPayloadCodec implements PayloadCodec {
  /**
   * The encryption context key under which the codec binds each data key to the Temporal
   * namespace it was generated for.
   */
  public static final String NAMESPACE_CONTEXT_KEY = "temporal-namespace";

  /** How many namespace views a codec remembers; beyond it a view is built afresh per call. */
  private static final int MAX_VIEWS = 1024;

  private final Shared shared;
  private final Scope scope;
  private final String namespace;

  private KmsPayloadCodec(Shared shared, String namespace) {
    this.shared = shared;
    this.namespace = namespace;
    this.scope = shared.scopeFor(namespace);
  }

  /** A builder; {@code kmsClient} and {@code keyId} are required. */
  public static Builder newBuilder() {
    return new Builder();
  }

  /** The namespace put in the encryption context of new data keys; empty for none. */
  public String namespace() {
    return namespace;
  }

  /**
   * A view of this codec that binds new data keys to {@code namespace}, sharing this codec's
   * caches.
   */
  public KmsPayloadCodec withNamespace(String namespace) {
    if (namespace == null || namespace.isEmpty() || namespace.equals(this.namespace)) {
      return this;
    }
    KmsPayloadCodec view = shared.views.getIfPresent(namespace);
    if (view == null) {
      view = new KmsPayloadCodec(shared, namespace);
      shared.views.put(namespace, view);
    }
    return view;
  }

  /**
   * The SDK calls this with the workflow's or activity's serialization context: the codec returned
   * binds new data keys to that namespace.
   */
  @Nonnull
  @Override
  public PayloadCodec withContext(@Nonnull SerializationContext context) {
    if (context instanceof HasWorkflowSerializationContext) {
      return withNamespace(((HasWorkflowSerializationContext) context).getNamespace());
    }
    return this;
  }

  /**
   * The data converter for {@code WorkflowClientOptions.setDataConverter}: the SDK's default
   * converter, then this codec. Failure messages and stack traces are moved into an encoded
   * payload so they are encrypted too (the server sees "Encoded failure").
   */
  public DataConverter newDataConverter() {
    return newDataConverter(DefaultDataConverter.newDefaultInstance());
  }

  /** As {@link #newDataConverter()}, over {@code parent} instead of the SDK's default. */
  public DataConverter newDataConverter(DataConverter parent) {
    return new CodecDataConverter(
        Objects.requireNonNull(parent, "parent"), Collections.singletonList(this), true);
  }

  /**
   * Encrypts each payload into a kms-envelope-v1 payload; with {@code disableEncryption}, returns
   * them unchanged. Fails rather than return any payload unencrypted.
   *
   * @throws KmsCallException if KMS cannot give a data key
   */
  @Nonnull
  @Override
  public List<Payload> encode(@Nonnull List<Payload> payloads) {
    if (shared.disableEncryption) {
      return payloads;
    }
    List<Payload> out = new ArrayList<>(payloads.size());
    for (int i = 0; i < payloads.size(); i++) {
      Payload p = payloads.get(i);
      try {
        long size = shared.encrypt.countsBytes() ? p.getSerializedSize() : 0;
        out.add(shared.encrypt.get(scope, size).seal(p));
      } catch (KmsCodecException e) {
        throw e.at("encode", i, payloads.size());
      }
    }
    return out;
  }

  /**
   * Decrypts each kms-envelope-v1 payload back into the payload that was encoded, and passes any
   * other payload through unchanged (unless {@code rejectUnencrypted}). Every payload is parsed
   * and checked against the allow-list before KMS is asked for any data key, so a batch refused
   * for one bad payload costs no KMS call.
   *
   * @throws KmsCodecException (a subclass naming the cause) for the first payload that fails
   */
  @Nonnull
  @Override
  public List<Payload> decode(@Nonnull List<Payload> payloads) {
    Envelope[] envelopes = new Envelope[payloads.size()];
    for (int i = 0; i < envelopes.length; i++) {
      try {
        envelopes[i] = check(payloads.get(i));
      } catch (KmsCodecException e) {
        throw e.at("decode", i, envelopes.length);
      }
    }
    List<Payload> out = new ArrayList<>(envelopes.length);
    for (int i = 0; i < envelopes.length; i++) {
      Envelope env = envelopes[i];
      if (env == null) {
        out.add(payloads.get(i));
        continue;
      }
      try {
        out.add(env.open(shared.decrypt.get(env)));
      } catch (KmsCodecException e) {
        throw e.at("decode", i, envelopes.length);
      }
    }
    return out;
  }

  /** Parses and checks one payload without decrypting it; {@code null} if it passes through. */
  private Envelope check(Payload p) {
    Envelope env = Envelope.parse(p);
    if (env == null) {
      if (shared.rejectUnencrypted) {
        throw new UnencryptedPayloadException("payload is not encrypted");
      }
      return null;
    }
    shared.checkAllowed(env.keyArn);
    if (shared.requireSameNamespace) {
      String named = env.encryptionContext().get(NAMESPACE_CONTEXT_KEY);
      if (named != null && !namespace.isEmpty() && !named.equals(namespace)) {
        throw new NamespaceMismatchException(
            "payload belongs to namespace \"" + named + "\", decoding for \"" + namespace + "\"");
      }
    }
    return env;
  }

  /** What every namespace view of one codec has in common. */
  private static final class Shared {
    final KmsCalls kms;
    final String keyId;
    final Map<String, String> encryptionContext;
    final Set<String> allowed;
    /** The allowed multi-Region keys, each as its ARN with the region left out. */
    final Set<KeyArns.KeyArn> allowedReplicas;
    final KeyResolver resolver; // null when nothing is encrypted
    final DecryptionKeys decrypt;
    final EncryptionKeys encrypt;
    final boolean rejectUnencrypted;
    final boolean requireSameNamespace;
    final boolean disableEncryption;
    final Cache<String, KmsPayloadCodec> views =
        Caffeine.newBuilder().maximumSize(MAX_VIEWS).executor(Runnable::run).build();

    Shared(Builder b) {
      Ticker ticker = () -> TimeUnit.MILLISECONDS.toNanos(b.clock.millis());
      this.kms = new KmsCalls(b.kmsClient, b.kmsTimeout);
      this.keyId = b.keyId;
      this.encryptionContext = Map.copyOf(b.encryptionContext);
      Set<String> allowed = new HashSet<>(b.decryptKeyIds);
      if (KeyArns.isKeyArn(b.keyId)) {
        allowed.add(b.keyId);
      }
      this.allowed = Set.copyOf(allowed);
      Set<KeyArns.KeyArn> replicas = new HashSet<>();
      for (String id : allowed) {
        KeyArns.parse(id)
            .filter(KeyArns.KeyArn::isMultiRegion)
            .ifPresent(arn -> replicas.add(arn.inRegion("")));
      }
      this.allowedReplicas = Set.copyOf(replicas);
      this.resolver =
          b.keyId == null ? null : new KeyResolver(b.keyId, kms, b.dataKeyMaxAge, ticker);
      this.decrypt =
          new DecryptionKeys(routes(b, kms), b.decryptCacheSize, b.decryptCacheTtl, ticker);
      this.encrypt =
          new EncryptionKeys(
              this::generate,
              b.dataKeyMaxAge,
              b.maxPayloadsPerDataKey,
              b.maxBytesPerDataKey,
              b.clock);
      this.rejectUnencrypted = b.rejectUnencrypted;
      this.requireSameNamespace = b.requireSameNamespace;
      this.disableEncryption = b.disableEncryption;
    }

    /** Where Decrypt calls go: all to {@code kms} without a region of the codec's own. */
    private static DecryptRoutes routes(Builder b, KmsCalls kms) {
      if (b.region == null) {
        return DecryptRoutes.single(kms);
      }
      Map<String, KmsCalls> clients = new HashMap<>();
      b.regionalKmsClients.forEach(
          (region, client) -> clients.put(region, new KmsCalls(client, b.kmsTimeout)));
      clients.put(b.region, kms);
      return DecryptRoutes.regional(b.region, clients, b.regionPreference);
    }

    Scope scopeFor(String namespace) {
      Map<String, String> context = new HashMap<>(encryptionContext);
      if (!namespace.isEmpty()) {
        context.put(NAMESPACE_CONTEXT_KEY, namespace);
      }
      return new Scope(keyId == null ? "" : keyId, context);
    }

    /**
     * Asks KMS for a data key of {@code scope} and builds its sealing key. The data key also goes
     * into the decryption cache, so that a worker reading back its own payloads (an activity's
     * input, a query's result) makes no KMS call.
     */
    SealingKey generate(Scope scope) {
      KmsCalls.GeneratedKey dk = kms.generateDataKey(scope.keyId, scope.context);
      try {
        SealingKey key = new SealingKey(dk.plaintext, dk.keyArn, dk.wrapped, scope.context);
        decrypt.add(key.identity(), dk.plaintext);
        resolver.observe(dk.keyArn);
        return key;
      } finally {
        Arrays.fill(dk.plaintext, (byte) 0);
      }
    }

    void checkAllowed(String keyArn) {
      if (allowed.contains(keyArn)) {
        return;
      }
      if (!allowedReplicas.isEmpty()) {
        Optional<KeyArns.KeyArn> arn = KeyArns.parse(keyArn);
        if (arn.isPresent()
            && arn.get().isMultiRegion()
            && allowedReplicas.contains(arn.get().inRegion(""))) {
          return;
        }
      }
      if (resolver != null && KeyArns.sameKey(resolver.arn(), keyArn)) {
        return;
      }
      throw new KeyNotAllowedException(
          "payload's master key is not allowed for decryption: " + keyArn);
    }
  }

  /**
   * Configures a {@link KmsPayloadCodec}. {@link #kmsClient} and {@link #keyId} are required;
   * every other setting has the default given with it.
   */
  public static final class Builder {
    private KmsClient kmsClient;
    private String keyId;
    private List<String> decryptKeyIds = List.of();
    private Map<String, String> encryptionContext = Map.of();
    private String namespace = "";
    private Duration dataKeyMaxAge = Duration.ofMinutes(5);
    private long maxPayloadsPerDataKey = 10_000;
    private long maxBytesPerDataKey = 0;
    private long decryptCacheSize = 10_000;
    private Duration decryptCacheTtl = Duration.ofHours(1);
    private Duration kmsTimeout = Duration.ofSeconds(5);
    private boolean rejectUnencrypted;
    private boolean requireSameNamespace;
    private boolean disableEncryption;
    private Clock clock = Clock.systemUTC();
    private String region;
    private Map<String, KmsClient> regionalKmsClients = Map.of();
    private List<String> regionPreference = List.of();

    private Builder() {}

    /** The client that generates and unwraps data keys. Required. */
    public Builder kmsClient(KmsClient kmsClient) {
      this.kmsClient = kmsClient;
      return this;
    }

    /**
     * The KMS key new payloads are encrypted under: a key ARN, key ID, alias name ({@code
     * alias/temporal}) or alias ARN. Payloads always record the key ARN; with an alias, the codec
     * follows it to a new key within {@code dataKeyMaxAge}. Required unless {@code
     * disableEncryption}.
     */
    public Builder keyId(String keyId) {
      this.keyId = keyId;
      return this;
    }

    /**
     * Further key ARNs whose payloads may be decrypted: the keys rotated away from. A payload under
     * any other key fails with {@link KeyNotAllowedException} before any KMS call. Only key ARNs,
     * so that moving an alias never widens what is decrypted. A multi-Region key ({@code mrk-...})
     * allows its replicas in every region of the same partition and account; a single-Region key
     * allows only its exact ARN. Default: none.
     */
    public Builder decryptKeyIds(List<String> keyArns) {
      this.decryptKeyIds = List.copyOf(keyArns);
      return this;
    }

    /**
     * Added to every data key's KMS encryption context (a key policy can require it; CloudTrail
     * logs it). Must not set {@value #NAMESPACE_CONTEXT_KEY}. Default: empty.
     */
    public Builder encryptionContext(Map<String, String> context) {
      this.encryptionContext = Map.copyOf(context);
      return this;
    }

    /**
     * The namespace put in the encryption context when the SDK does not say which namespace a
     * payload belongs to (it does for workflow and activity payloads). Default: none.
     */
    public Builder namespace(String namespace) {
      this.namespace = Objects.requireNonNull(namespace, "namespace");
      return this;
    }

    /** How long a generated data key is used for new payloads. Default 5 minutes. */
    public Builder dataKeyMaxAge(Duration maxAge) {
      this.dataKeyMaxAge = Objects.requireNonNull(maxAge, "dataKeyMaxAge");
      return this;
    }

    /**
     * How many payloads one data key encrypts before a new one is generated. Default 10,000; 1
     * means a KMS data key per payload.
     */
    public Builder maxPayloadsPerDataKey(long max) {
      this.maxPayloadsPerDataKey = max;
      return this;
    }

    /** The payload bytes one data key may encrypt. Default 0: no bound. */
    public Builder maxBytesPerDataKey(long max) {
      this.maxBytesPerDataKey = max;
      return this;
    }

    /** How many unwrapped data keys are kept for decryption. Default 10,000. */
    public Builder decryptCacheSize(long size) {
      this.decryptCacheSize = size;
      return this;
    }

    /** How long an unwrapped data key is kept. Default 1 hour. */
    public Builder decryptCacheTtl(Duration ttl) {
      this.decryptCacheTtl = Objects.requireNonNull(ttl, "decryptCacheTtl");
      return this;
    }

    /**
     * Bounds each KMS call, the AWS SDK's retries included. Default 5 seconds, well inside
     * Temporal's default 10-second workflow task timeout.
     */
    public Builder kmsTimeout(Duration timeout) {
      this.kmsTimeout = Objects.requireNonNull(timeout, "kmsTimeout");
      return this;
    }

    /**
     * Makes decode fail with {@link UnencryptedPayloadException} on a payload that is not
     * encrypted. Default false: such payloads pass through, so histories written before
     * encryption was turned on still read.
     */
    public Builder rejectUnencrypted(boolean reject) {
      this.rejectUnencrypted = reject;
      return this;
    }

    /**
     * Makes decode fail with {@link NamespaceMismatchException}, before any KMS call, on a payload
     * whose encryption context names a namespace other than the one the codec decodes for.
     * Default false, because some payloads legitimately cross namespaces (Nexus operations).
     */
    public Builder requireSameNamespace(boolean require) {
      this.requireSameNamespace = require;
      return this;
    }

    /**
     * Makes encode pass payloads through unchanged while decode still decrypts: for rolling
     * encryption back without stranding encrypted histories. Default false.
     */
    public Builder disableEncryption(boolean disable) {
      this.disableEncryption = disable;
      return this;
    }

    /**
     * The AWS region of {@link #kmsClient}, the codec's own, which turns on the routing of
     * docs/FORMAT.md's "Multi-Region keys": a payload under a multi-Region key ({@code mrk-...})
     * is unwrapped by that key's replica in this region, naming the replica's ARN, which KMS must
     * name back; only if that call fails transiently (throttling, a KMS fault, a timeout, a broken
     * connection) are the replicas of {@link #regionPreference} with a client tried, in order,
     * then the one in the payload's own region (each attempt bounded by {@link #kmsTimeout}); a
     * refusal is final. A payload under a
     * single-Region key is unwrapped in its own region, by its client in {@link
     * #regionalKmsClients} if there is one, else by {@link #kmsClient}. Default: none, and every
     * payload is unwrapped by {@link #kmsClient} naming the payload's key ARN.
     */
    public Builder region(String region) {
      this.region = Objects.requireNonNull(region, "region");
      return this;
    }

    /**
     * KMS clients of regions other than {@link #region}, by region name ({@code "eu-west-1"}).
     * Requires {@link #region}, and must not name it: {@link #kmsClient} is its client. Default:
     * none.
     */
    public Builder regionalKmsClients(Map<String, KmsClient> clients) {
      this.regionalKmsClients = Map.copyOf(clients);
      return this;
    }

    /**
     * The order in which the replicas of other regions are tried when {@link #region}'s KMS fails
     * transiently, for payloads under multi-Region keys; regions without a client in {@link
     * #regionalKmsClients} are skipped. Requires {@link #region}. Default: none, and only the
     * writer's region is tried after {@link #region}.
     */
    public Builder regionPreference(List<String> regions) {
      this.regionPreference = List.copyOf(regions);
      return this;
    }

    /** The clock of key ages and cache expiry. Default the system clock; tests set it. */
    public Builder clock(Clock clock) {
      this.clock = Objects.requireNonNull(clock, "clock");
      return this;
    }

    /**
     * Validates the settings and builds the codec. It makes no KMS call: data keys are generated
     * on first use, so a worker starts even while KMS is out of reach.
     *
     * @throws IllegalArgumentException naming the setting at fault
     */
    public KmsPayloadCodec build() {
      if (kmsClient == null) {
        throw new IllegalArgumentException("kmscodec: kmsClient is required");
      }
      if ((keyId == null || keyId.isEmpty()) && !disableEncryption) {
        throw new IllegalArgumentException(
            "kmscodec: keyId is required unless disableEncryption is set");
      }
      if (keyId != null && keyId.isEmpty()) {
        keyId = null;
      }
      if (encryptionContext.containsKey(NAMESPACE_CONTEXT_KEY)) {
        throw new IllegalArgumentException(
            "kmscodec: encryptionContext must not set \"" + NAMESPACE_CONTEXT_KEY
                + "\": use namespace");
      }
      byte[] json;
      try {
        json = EncryptionContextJson.encode(encryptionContext);
      } catch (IllegalArgumentException e) {
        throw new IllegalArgumentException("kmscodec: encryptionContext: " + e.getMessage(), e);
      }
      if (json != null && json.length > Envelope.MAX_CONTEXT_SIZE / 2) {
        throw new IllegalArgumentException(
            "kmscodec: encryptionContext is " + json.length + " bytes as JSON; keep it under "
                + Envelope.MAX_CONTEXT_SIZE / 2);
      }
      for (String id : decryptKeyIds) {
        if (!KeyArns.isKeyArn(id)) {
          throw new IllegalArgumentException(
              "kmscodec: decryptKeyIds: \"" + id + "\" is not a key ARN");
        }
      }
      validateRegions();
      positive("dataKeyMaxAge", dataKeyMaxAge);
      positive("decryptCacheTtl", decryptCacheTtl);
      positive("kmsTimeout", kmsTimeout);
      if (maxPayloadsPerDataKey < 1) {
        throw new IllegalArgumentException("kmscodec: maxPayloadsPerDataKey must be at least 1");
      }
      if (maxBytesPerDataKey < 0) {
        throw new IllegalArgumentException("kmscodec: maxBytesPerDataKey must not be negative");
      }
      if (decryptCacheSize < 1) {
        throw new IllegalArgumentException("kmscodec: decryptCacheSize must be at least 1");
      }
      return new KmsPayloadCodec(new Shared(this), namespace);
    }

    private void validateRegions() {
      if (region == null) {
        if (!regionalKmsClients.isEmpty() || !regionPreference.isEmpty()) {
          throw new IllegalArgumentException(
              "kmscodec: regionalKmsClients and regionPreference need region, the region of"
                  + " kmsClient");
        }
        return;
      }
      if (region.isEmpty()) {
        throw new IllegalArgumentException("kmscodec: region must not be empty");
      }
      for (String name : regionalKmsClients.keySet()) {
        if (name.isEmpty()) {
          throw new IllegalArgumentException("kmscodec: regionalKmsClients has an empty region");
        }
        if (name.equals(region)) {
          throw new IllegalArgumentException(
              "kmscodec: regionalKmsClients must not name region \"" + region
                  + "\": kmsClient is its client");
        }
      }
    }

    private static void positive(String name, Duration d) {
      if (d.isNegative() || d.isZero()) {
        throw new IllegalArgumentException("kmscodec: " + name + " must be positive");
      }
    }
  }
}
