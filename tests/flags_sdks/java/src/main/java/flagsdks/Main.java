// Drives the official Java SDKs against a running gapless flag service for tests/flags_sdks/test_java_sdks.py.
//
// Reads one JSON job from stdin and writes JSON lines to stdout, as node/sdks.mjs does:
//   {"mode": "evaluate", "url", "token", "flags", "contexts", "ofrepEvery"} -> {"unleash": [...], "ofrep": [...]}
//   {"mode": "watch", "url", "token", "flag", "context"} -> {"ready": true}, then {"off": ms}
package flagsdks;

import com.google.common.collect.ImmutableList;
import com.google.common.collect.ImmutableMap;
import com.google.gson.Gson;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.openfeature.contrib.providers.ofrep.OfrepProvider;
import dev.openfeature.contrib.providers.ofrep.OfrepProviderOptions;
import dev.openfeature.sdk.Client;
import dev.openfeature.sdk.FlagEvaluationDetails;
import dev.openfeature.sdk.MutableContext;
import dev.openfeature.sdk.OpenFeatureAPI;
import io.getunleash.DefaultUnleash;
import io.getunleash.Unleash;
import io.getunleash.UnleashContext;
import io.getunleash.util.UnleashConfig;
import io.getunleash.variant.Variant;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

public final class Main {
  private static final Gson GSON = new Gson();

  private Main() {}

  private static String text(JsonObject o, String key) {
    JsonElement e = o.get(key);
    return e == null || e.isJsonNull() ? null : e.getAsString();
  }

  private static UnleashContext context(JsonObject c) {
    UnleashContext.Builder b = UnleashContext.builder();
    if (text(c, "userId") != null) b.userId(text(c, "userId"));
    if (text(c, "sessionId") != null) b.sessionId(text(c, "sessionId"));
    if (text(c, "remoteAddress") != null) b.remoteAddress(text(c, "remoteAddress"));
    if (text(c, "environment") != null) b.environment(text(c, "environment"));
    JsonObject props = c.has("properties") ? c.getAsJsonObject("properties") : new JsonObject();
    for (Map.Entry<String, JsonElement> p : props.entrySet()) b.addProperty(p.getKey(), p.getValue().getAsString());
    return b.build();
  }

  private static Unleash start(JsonObject job, String name, boolean streaming) {
    UnleashConfig.Builder config = UnleashConfig.builder()
        .appName(name)
        .instanceId(name)
        .unleashAPI(job.get("url").getAsString() + "/api/")
        .apiKey(job.get("token").getAsString())
        .fetchTogglesInterval(1)
        .sendMetricsInterval(1)
        .synchronousFetchOnInitialisation(true);
    if (streaming) config.experimentalStreamingMode();
    return new DefaultUnleash(config.build());
  }

  private static void emit(Object value) {
    System.out.println(GSON.toJson(value));
    System.out.flush();
  }

  public static void main(String[] args) throws Exception {
    JsonObject job = JsonParser.parseReader(new InputStreamReader(System.in, StandardCharsets.UTF_8)).getAsJsonObject();
    String mode = job.get("mode").getAsString();
    if (mode.equals("evaluate")) {
      Unleash unleash = start(job, "java-conformance", false);
      String token = job.get("token").getAsString();
      OfrepProviderOptions options = OfrepProviderOptions.builder()
          .baseUrl(job.get("url").getAsString())
          .headers(ImmutableMap.of("Authorization", ImmutableList.of("Bearer " + token)))
          .build();
      OpenFeatureAPI.getInstance().setProviderAndWait(OfrepProvider.constructProvider(options));
      Client of = OpenFeatureAPI.getInstance().getClient();
      List<Object> unleashAnswers = new ArrayList<>();
      List<Object> ofrepAnswers = new ArrayList<>();
      int every = job.get("ofrepEvery").getAsInt();
      JsonArray contexts = job.getAsJsonArray("contexts");
      for (int i = 0; i < contexts.size(); i++) {
        JsonObject c = contexts.get(i).getAsJsonObject();
        UnleashContext ctx = context(c);
        for (JsonElement f : job.getAsJsonArray("flags")) {
          String flag = f.getAsString();
          Variant v = unleash.getVariant(flag, ctx);
          unleashAnswers.add(List.of(unleash.isEnabled(flag, ctx), v.isEnabled() ? v.getName() : "disabled"));
          if (i % every != 0) {
            ofrepAnswers.add(null);
            continue;
          }
          MutableContext ec = new MutableContext();
          JsonObject props = c.has("properties") ? c.getAsJsonObject("properties") : new JsonObject();
          for (Map.Entry<String, JsonElement> p : props.entrySet()) {
            if (p.getKey().equals("targetingKey")) ec.setTargetingKey(p.getValue().getAsString());
            else ec.add(p.getKey(), p.getValue().getAsString());
          }
          for (String k : List.of("userId", "sessionId", "remoteAddress", "environment")) {
            if (text(c, k) != null) ec.add(k, text(c, k));
          }
          FlagEvaluationDetails<Boolean> d = of.getBooleanDetails(flag, false, ec);
          List<Object> answer = new ArrayList<>();
          answer.add(d.getValue());
          answer.add(d.getVariant());
          answer.add(d.getReason());
          ofrepAnswers.add(answer);
        }
      }
      emit(Map.of("unleash", unleashAnswers, "ofrep", ofrepAnswers));
      unleash.shutdown();
      OpenFeatureAPI.getInstance().shutdown();
    } else {
      Unleash unleash = start(job, "java-streaming", true);
      UnleashContext ctx = context(job.getAsJsonObject("context"));
      String flag = job.get("flag").getAsString();
      while (!unleash.isEnabled(flag, ctx)) Thread.sleep(10);
      emit(Map.of("ready", true));
      long started = System.currentTimeMillis();
      while (unleash.isEnabled(flag, ctx)) Thread.sleep(5);
      emit(Map.of("off", System.currentTimeMillis() - started));
      unleash.shutdown();
    }
    System.exit(0);
  }
}
