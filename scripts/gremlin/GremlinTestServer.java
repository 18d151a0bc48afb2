// A real Apache TinkerPop Gremlin Server for the tests, started by scripts/gremlin.sh:
// gremlin-server and TinkerGraph from Maven Central, WebSocket on 127.0.0.1:PORT only,
// one graph (TinkerTransactionGraph: each request is a transaction, committed when it
// succeeds and rolled back when it fails, as on Neptune; ids chosen by the client) bound
// to the traversal source "g", SASL PLAIN authentication (user idgraph, the password given
// in GREMLIN_PASSWORD), GraphSON 3 and GraphBinary, requests up to 64 MiB. No init
// script: "g" is bound from Java. Prints
// "ready ws://..." once it serves, and shuts down on TERM. DIR is unused (TinkerGraph is
// in memory) but kept for the shared launcher convention.
//
//   GREMLIN_PASSWORD=... java -cp "classes:lib/*" GremlinTestServer PORT DIR
import java.net.InetAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.tinkerpop.gremlin.server.GremlinServer;
import org.apache.tinkerpop.gremlin.server.Settings;
import org.apache.tinkerpop.gremlin.server.auth.AuthenticatedUser;
import org.apache.tinkerpop.gremlin.server.auth.AuthenticationException;
import org.apache.tinkerpop.gremlin.server.auth.Authenticator;
import org.apache.tinkerpop.gremlin.server.util.ServerGremlinExecutor;
import org.apache.tinkerpop.gremlin.structure.Graph;

public class GremlinTestServer {
  /** One user, one password (from the server's settings); SASL PLAIN. */
  public static final class PasswordAuthenticator implements Authenticator {
    private String user;
    private byte[] password;

    @Override
    public boolean requireAuthentication() {
      return true;
    }

    @Override
    public void setup(Map<String, Object> config) {
      user = String.valueOf(config.get("user"));
      password = String.valueOf(config.get("password")).getBytes(StandardCharsets.UTF_8);
    }

    @Override
    public SaslNegotiator newSaslNegotiator(InetAddress remote) {
      return new SaslNegotiator() {
        private AuthenticatedUser done;

        @Override
        public byte[] evaluateResponse(byte[] response) throws AuthenticationException {
          // PLAIN: authzid NUL authcid NUL password
          String[] parts = new String(response, StandardCharsets.UTF_8).split("\u0000", -1);
          if (parts.length != 3) {
            throw new AuthenticationException("SASL PLAIN response expected");
          }
          Map<String, String> credentials = new HashMap<>();
          credentials.put("username", parts[1]);
          credentials.put("password", parts[2]);
          done = authenticate(credentials);
          return null;
        }

        @Override
        public boolean isComplete() {
          return done != null;
        }

        @Override
        public AuthenticatedUser getAuthenticatedUser() throws AuthenticationException {
          if (done == null) {
            throw new AuthenticationException("not authenticated");
          }
          return done;
        }
      };
    }

    @Override
    public AuthenticatedUser authenticate(Map<String, String> credentials)
        throws AuthenticationException {
      String given = credentials.getOrDefault("password", "");
      if (user.equals(credentials.get("username"))
          && MessageDigest.isEqual(password, given.getBytes(StandardCharsets.UTF_8))) {
        return new AuthenticatedUser(user);
      }
      throw new AuthenticationException("Username and/or password are incorrect");
    }
  }

  public static void main(String[] args) throws Exception {
    String password = System.getenv("GREMLIN_PASSWORD");
    if (args.length != 2 || password == null || password.isEmpty()) {
      System.err.println("usage: GREMLIN_PASSWORD=... GremlinTestServer PORT DIR");
      System.exit(2);
    }
    Path dir = Path.of(args[1]);
    Files.createDirectories(dir);
    Path graphConfig = dir.resolve("tinkergraph.properties");
    Files.writeString(
        graphConfig,
        "gremlin.graph=org.apache.tinkerpop.gremlin.tinkergraph.structure.TinkerTransactionGraph\n"
            + "gremlin.tinkergraph.vertexIdManager=ANY\n"
            + "gremlin.tinkergraph.edgeIdManager=ANY\n");
    Settings settings = new Settings();
    settings.host = "127.0.0.1";
    settings.port = Integer.parseInt(args[0]);
    settings.graphs = new HashMap<>(Map.of("graph", graphConfig.toString()));
    // GraphSON 3 (what idgraph speaks) and GraphBinary, as Neptune offers.
    Settings.SerializerSettings graphson = new Settings.SerializerSettings();
    graphson.className = "org.apache.tinkerpop.gremlin.util.ser.GraphSONMessageSerializerV3";
    graphson.config = new HashMap<>(Map.of(
        "ioRegistries",
        List.of("org.apache.tinkerpop.gremlin.tinkergraph.structure.TinkerIoRegistryV3")));
    Settings.SerializerSettings binary = new Settings.SerializerSettings();
    binary.className = "org.apache.tinkerpop.gremlin.util.ser.GraphBinaryMessageSerializerV1";
    settings.serializers = new ArrayList<>(List.of(graphson, binary));
    // A script engine only for the client's connection check (`g.inject(0)` sent as a
    // string, which Neptune also accepts); idgraph itself sends bytecode only.
    Settings.ScriptEngineSettings groovy = new Settings.ScriptEngineSettings();
    groovy.plugins = new HashMap<>(Map.of(
        "org.apache.tinkerpop.gremlin.server.jsr223.GremlinServerGremlinPlugin", new HashMap<>()));
    settings.scriptEngines = new HashMap<>(Map.of("gremlin-groovy", groovy));
    settings.maxContentLength = 64 * 1024 * 1024;
    settings.authentication = new Settings.AuthenticationSettings();
    settings.authentication.authenticator = PasswordAuthenticator.class.getName();
    settings.authentication.config = new HashMap<>(Map.of("user", "idgraph", "password", password));
    GremlinServer server = new GremlinServer(settings);
    ServerGremlinExecutor executor = server.start().join();
    Graph graph = executor.getGraphManager().getGraph("graph");
    executor.getGraphManager().putTraversalSource("g", graph.traversal());
    Runtime.getRuntime().addShutdownHook(new Thread(() -> server.stop().join()));
    System.out.println("ready ws://127.0.0.1:" + settings.port + "/gremlin");
    System.out.flush();
    Thread.currentThread().join();
  }
}
