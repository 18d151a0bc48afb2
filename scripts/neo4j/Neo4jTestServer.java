// A real Neo4j 5 Community server for the tests, started by scripts/neo4j.sh: the database
// engine, Bolt server and Cypher runtime of neo4j-harness (Maven Central), Bolt on
// 127.0.0.1:PORT only, no HTTP, authentication on (user neo4j, the password given in
// NEO4J_PASSWORD), data under DIR. Prints "ready <bolt uri>" once it accepts connections,
// and shuts down cleanly on TERM.
//
//   NEO4J_PASSWORD=... java -cp "classes:lib/*" Neo4jTestServer PORT DIR
import java.nio.file.Path;
import java.util.Map;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.HttpConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.harness.Neo4j;
import org.neo4j.harness.Neo4jBuilders;

public class Neo4jTestServer {
  public static void main(String[] args) throws Exception {
    String password = System.getenv("NEO4J_PASSWORD");
    if (args.length != 2 || password == null || password.length() < 8) {
      System.err.println("usage: NEO4J_PASSWORD=<8+ characters> Neo4jTestServer PORT DIR");
      System.exit(2);
    }
    int port = Integer.parseInt(args[0]);
    Neo4j neo = Neo4jBuilders.newInProcessBuilder(Path.of(args[1]))
        .withConfig(BoltConnector.enabled, true)
        .withConfig(BoltConnector.listen_address, new SocketAddress("127.0.0.1", port))
        .withConfig(HttpConnector.enabled, false)
        .withConfig(GraphDatabaseSettings.auth_enabled, true)
        .withDisabledServer()
        .build();
    Runtime.getRuntime().addShutdownHook(new Thread(neo::close));
    // The built-in user starts with the password "neo4j" and must change it: set ours.
    neo.databaseManagementService()
        .database("system")
        .executeTransactionally(
            "ALTER USER neo4j SET PASSWORD $password CHANGE NOT REQUIRED",
            Map.of("password", password));
    System.out.println("ready " + neo.boltURI());
    System.out.flush();
    Thread.currentThread().join();
  }
}
