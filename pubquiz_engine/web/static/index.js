// The landing page: links to the three clients, in the page's language.
import { translatePage } from "./i18n.js";

translatePage();
