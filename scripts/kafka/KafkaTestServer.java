// A real Apache Kafka 4 broker for the tests, started by scripts/kafka.sh: kafka_2.13 from
// Maven Central, one node that is both broker and KRaft controller (no ZooKeeper). The
// client listener is SASL_PLAINTEXT on 127.0.0.1:PORT with the PLAIN mechanism (user
// idgraph, the password given in KAFKA_PASSWORD), so the tests exercise idgraph's SASL
// settings; the controller listens on another free loopback port. Topics are created by
// the clients (auto-creation is off, so a misspelt topic is an error, as in production).
// Data under DIR/logs; the storage is formatted on first start. Prints "ready PORT" once an
// authenticated admin client sees the cluster, and shuts down on TERM.
//
//   KAFKA_PASSWORD=... java -cp "classes:lib/*" KafkaTestServer PORT DIR
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.common.Uuid;

public class KafkaTestServer {
  public static void main(String[] args) throws Exception {
    if (args.length != 2) {
      System.err.println("usage: KafkaTestServer PORT DIR");
      System.exit(2);
    }
    int port = Integer.parseInt(args[0]);
    Path dir = Path.of(args[1]).toAbsolutePath();
    String password = System.getenv("KAFKA_PASSWORD");
    if (password == null || password.isEmpty()) {
      System.err.println("KAFKA_PASSWORD is not set");
      System.exit(2);
    }
    int controllerPort;
    try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      controllerPort = s.getLocalPort();
    }
    String jaas =
        "org.apache.kafka.common.security.plain.PlainLoginModule required"
            + " username=\"idgraph\" password=\"" + password + "\""
            + " user_idgraph=\"" + password + "\";";
    Properties p = new Properties();
    p.setProperty("process.roles", "broker,controller");
    p.setProperty("node.id", "1");
    p.setProperty("controller.quorum.voters", "1@127.0.0.1:" + controllerPort);
    p.setProperty("listeners",
        "SASL_PLAINTEXT://127.0.0.1:" + port + ",CONTROLLER://127.0.0.1:" + controllerPort);
    p.setProperty("advertised.listeners", "SASL_PLAINTEXT://127.0.0.1:" + port);
    p.setProperty("listener.security.protocol.map",
        "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT");
    p.setProperty("controller.listener.names", "CONTROLLER");
    p.setProperty("inter.broker.listener.name", "SASL_PLAINTEXT");
    p.setProperty("sasl.enabled.mechanisms", "PLAIN");
    p.setProperty("sasl.mechanism.inter.broker.protocol", "PLAIN");
    p.setProperty("listener.name.sasl_plaintext.plain.sasl.jaas.config", jaas);
    p.setProperty("log.dirs", dir.resolve("logs").toString());
    p.setProperty("auto.create.topics.enable", "false");
    p.setProperty("offsets.topic.replication.factor", "1");
    p.setProperty("offsets.topic.num.partitions", "4");
    p.setProperty("transaction.state.log.replication.factor", "1");
    p.setProperty("transaction.state.log.min.isr", "1");
    p.setProperty("share.coordinator.state.topic.replication.factor", "1");
    p.setProperty("share.coordinator.state.topic.min.isr", "1");
    p.setProperty("group.initial.rebalance.delay.ms", "0");
    p.setProperty("log.flush.interval.messages", "1");
    Path props = dir.resolve("server.properties");
    try (OutputStream out = Files.newOutputStream(props)) {
      p.store(out, "written by KafkaTestServer");
    }

    if (!Files.exists(dir.resolve("logs").resolve("meta.properties"))) {
      int rc = kafka.tools.StorageTool.execute(
          new String[] {
            "format", "-t", Uuid.randomUuid().toString(), "-c", props.toString(),
            "--ignore-formatted"
          },
          System.out);
      if (rc != 0) {
        System.err.println("formatting the storage failed: " + rc);
        System.exit(1);
      }
    }

    Thread ready = new Thread(() -> announceWhenReady(port, jaas), "ready-probe");
    ready.setDaemon(true);
    ready.start();
    // Blocks until the broker shuts down (TERM runs its shutdown hook).
    kafka.Kafka.main(new String[] {props.toString()});
  }

  private static void announceWhenReady(int port, String jaas) {
    Properties c = new Properties();
    c.setProperty(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, "127.0.0.1:" + port);
    c.setProperty("security.protocol", "SASL_PLAINTEXT");
    c.setProperty("sasl.mechanism", "PLAIN");
    c.setProperty("sasl.jaas.config", jaas);
    c.setProperty(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "5000");
    c.setProperty(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "5000");
    long deadline = System.nanoTime() + TimeUnit.MINUTES.toNanos(5);
    while (System.nanoTime() < deadline) {
      try (Admin admin = Admin.create(c)) {
        if (!admin.describeCluster().nodes().get(5, TimeUnit.SECONDS).isEmpty()) {
          System.out.println("ready " + port);
          System.out.flush();
          return;
        }
      } catch (Exception e) {
        // not yet
      }
      try {
        Thread.sleep(250);
      } catch (InterruptedException e) {
        return;
      }
    }
  }
}
